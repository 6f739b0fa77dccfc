"""The per-run diagnostics of the study, against values computed by hand."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from torchrl_rgm.diagnostics import correction_rank_correlation, dataset_rows, top_decile_weight_share


def union_of(episode_returns, lengths, expert_rows=0, absorbing_rows=0):
    episode = np.concatenate([np.full(n, k) for k, n in enumerate(lengths)])
    ret = np.concatenate([np.full(n, r, dtype=np.float32) for r, n in zip(episode_returns, lengths)])
    n = len(episode) + expert_rows + absorbing_rows
    td = TensorDict({
        "episode": torch.as_tensor(np.concatenate([episode, np.zeros(expert_rows + absorbing_rows, int)])),
        "episode_return": torch.as_tensor(np.concatenate([ret, np.full(expert_rows + absorbing_rows, 1e6, np.float32)])),
        "is_expert": torch.zeros(n, 1, dtype=torch.bool), "absorbing": torch.zeros(n, 1, dtype=torch.bool),
    }, [n])
    td["is_expert"][len(episode):len(episode) + expert_rows] = True
    td["absorbing"][len(episode) + expert_rows:] = True
    return td


def test_top_decile_share_counts_the_best_tenth_of_episodes_only_in_the_data():
    # 20 episodes with returns 0..19: the top decile is episodes 18 and 19 (2 of 20 episodes)
    lengths = [5] * 18 + [10, 30]
    union = union_of(list(range(20)), lengths, expert_rows=7, absorbing_rows=3)
    assert int(dataset_rows(union).sum()) == sum(lengths)
    uniform = top_decile_weight_share(union, torch.ones(union.shape[0]))
    assert uniform["top_decile_data_share"] == pytest.approx(40 / 130)
    assert uniform["top_decile_weight_share"] == pytest.approx(40 / 130)
    w = torch.ones(union.shape[0])
    w[90:130] = 10.0      # the top episodes' transitions
    w[130:] = 1000.0      # expert rows and absorbing loops: ignored
    share = top_decile_weight_share(union, w)["top_decile_weight_share"]
    assert share == pytest.approx(400 / (90 + 400))


def test_correction_rank_correlation_is_spearman_on_the_data_rows():
    n = 300
    obs = torch.randn(n, 3)
    union = TensorDict({"observation": obs, "action": torch.zeros(n, 1), ("next", "reward"): torch.zeros(n, 1),
                        "is_expert": torch.zeros(n, 1, dtype=torch.bool),
                        "absorbing": torch.zeros(n, 1, dtype=torch.bool)}, [n])
    union["is_expert"][:50] = True

    class First(nn.Module):  # Δr's pre-tanh logit = the first observation coordinate
        def forward(self, o, a, r):
            return o[:, :1]

    net = TensorDictModule(First(), ["observation", "action", ("next", "reward")], ["logit"])
    truth = obs[:, 0] ** 3 + 0.5 * torch.randn(n)
    got = correction_rank_correlation(net, "logit", union, truth, res_scale=3.0, device="cpu", n=10_000)
    expected = spearmanr(obs[50:, 0].numpy(), truth[50:].numpy()).statistic
    assert got == pytest.approx(expected, abs=1e-6)
