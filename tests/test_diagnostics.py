"""The per-run diagnostics of the study, against values computed by hand."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from torchrl_rgm.diagnostics import (correction_rank_correlation, dataset_rows, demonstration_action_error,
                                    top_decile_weight_share)


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


def test_expert_weight_share_and_effective_sample_size_by_hand():
    from torchrl_rgm.diagnostics import expert_weight_share

    union = union_of([1.0, 2.0], [3, 3], expert_rows=2, absorbing_rows=2)  # 6 D^O rows, 2 expert, 2 loops
    w = torch.tensor([1.0, 1, 1, 1, 1, 1, 3, 3, 50, 50])  # the loops' weights must not count
    out = expert_weight_share(union, w)
    assert out["expert_weight_share"] == pytest.approx(6 / 12)
    assert out["expert_data_share"] == pytest.approx(2 / 8)
    assert out["weight_ess_fraction"] == pytest.approx(12 ** 2 / (6 + 18) / 8)
    uniform = expert_weight_share(union, torch.ones(10))
    assert uniform["weight_ess_fraction"] == pytest.approx(1.0) and uniform["expert_weight_share"] == pytest.approx(0.25)


def test_start_weight_share_counts_the_first_steps_of_the_data_episodes_by_hand():
    from torchrl_rgm.diagnostics import start_weight_share

    union = union_of([1.0, 2.0], [3, 3], expert_rows=2, absorbing_rows=2)  # 6 D^O rows, 2 expert, 2 loops
    union.set("step", torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 0, 0]))  # the expert's and the loops' starts do not count
    w = torch.tensor([4.0, 1, 1, 2, 1, 1, 3, 3, 50, 50])
    out = start_weight_share(union, w, steps=1)
    assert out["start_weight_share"] == pytest.approx((4 + 2) / 16)
    assert out["start_data_share"] == pytest.approx(2 / 8)
    assert start_weight_share(union, w, steps=2)["start_weight_share"] == pytest.approx((4 + 1 + 2 + 1) / 16)
    assert np.isnan(start_weight_share(union.exclude("step"), w)["start_weight_share"])


def test_discriminator_calibration_by_hand():
    from sklearn.metrics import roc_auc_score

    from torchrl_rgm.diagnostics import discriminator_calibration

    g = torch.Generator().manual_seed(0)
    union = union_of([1.0], [300], expert_rows=20, absorbing_rows=5)
    log_rho = torch.randn(325, 1, generator=g)
    log_rho[300:320] += 2.0
    union.set("log_density_ratio", log_rho)
    out = discriminator_calibration(union)
    real = slice(0, 320)
    expert = union["is_expert"].reshape(-1)[real].numpy()
    assert out["discriminator_auc"] == pytest.approx(roc_auc_score(expert, log_rho.reshape(-1)[real].numpy()))
    rho = torch.exp(log_rho.reshape(-1)[real].double())
    rho = rho / rho.mean()
    assert out["discriminator_expert_rho"] == pytest.approx(rho[300:320].mean().item() / (320 / 20))
    # an exact ratio (all of rho on the expert rows) is calibrated: 1
    exact = torch.full((325, 1), -30.0)
    exact[300:320] = 0.0
    union.set("log_density_ratio", exact)
    assert discriminator_calibration(union)["discriminator_expert_rho"] == pytest.approx(1.0, abs=1e-6)


def test_transition_diagnostics_of_an_anchored_loss_need_the_prepared_union():
    """An anchored RGMLoss reads the discriminator's ratio: on a union without it the diagnostics name the fix;
    on the prepared union, with V and the correction's output at 0, w is rho and r + Δr is α log rho + α (KL)."""
    from torchrl_rgm.diagnostics import transition_diagnostics
    from tests.objectives.zero_start import zero_start_networks
    from torchrl_rgm.objectives import RGMLoss
    torch.manual_seed(0)
    n, d = 64, 3
    log_ratio = torch.randn(n, 1)
    log_ratio = log_ratio - torch.logsumexp(log_ratio, 0) + np.log(n)
    union = TensorDict({"observation": torch.randn(n, d), "action": torch.randn(n, 1),
                        ("next", "observation"): torch.randn(n, d), ("next", "reward"): torch.randn(n, 1),
                        ("next", "done"): torch.zeros(n, 1, dtype=torch.bool)}, [n])
    value, actor, correction, _ = zero_start_networks(d)
    loss = RGMLoss(value, actor, correction, divergence="kl", alpha=0.5, correction_anchor=True, advantage_clip=None)
    init = torch.randn(5, d)
    with pytest.raises(ValueError, match="prepare_union"):
        transition_diagnostics(loss, union, init)
    union.set("log_density_ratio", log_ratio)
    diag = transition_diagnostics(loss, union, init, chunk=16)
    torch.testing.assert_close(diag["visitation_weight"], log_ratio.exp(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(diag["corrected_reward"], 0.5 * (log_ratio + 1.0), rtol=1e-4, atol=1e-5)


def demonstration(lengths, act_dim=2, absorbing_rows=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    step = torch.cat([torch.arange(n) for n in lengths] + [torch.zeros(absorbing_rows, dtype=torch.long)])
    n = step.numel()
    absorbing = torch.zeros(n, 1, dtype=torch.bool)
    absorbing[n - absorbing_rows:] = True
    return TensorDict({"observation": torch.randn(n, 3, generator=g), "action": torch.rand(n, act_dim, generator=g) * 2 - 1,
                       "step": step, "absorbing": absorbing}, [n])


def test_demonstration_action_error_against_a_loop_over_the_steps():
    expert = demonstration([4, 6])
    def policy(obs):
        return torch.tanh(obs[:, :2])
    num = den = 0.0
    for i in range(expert.shape[0]):   # by hand: every real step, weight gamma^t
        if expert["absorbing"][i]:
            continue
        w = 0.9 ** int(expert["step"][i])
        num += w * float(((torch.tanh(expert["observation"][i, :2]) - expert["action"][i]) ** 2).sum())
        den += w
    assert demonstration_action_error(policy, expert, 0.9) == pytest.approx(num / den, rel=1e-6)
    real = ~expert["absorbing"].reshape(-1)
    uniform = ((policy(expert["observation"]) - expert["action"]) ** 2).sum(-1)[real].mean()
    assert demonstration_action_error(policy, expert, None) == pytest.approx(float(uniform), rel=1e-6)


def test_demonstration_action_error_weighs_a_wrong_first_action_above_a_wrong_late_one():
    # the same error of 1 on one step: at t = 0 it counts more than at t = 5 (a rollout leaves the expert at once)
    expert = demonstration([10], absorbing_rows=0)
    def wrong_at(t):
        def policy(obs):
            out = expert["action"].clone()
            out[t, 0] += 1.0
            return out
        return policy
    early, late = (demonstration_action_error(wrong_at(t), expert, 0.99) for t in (0, 5))
    assert early > late > 0
    assert demonstration_action_error(wrong_at(0), expert, None) == demonstration_action_error(wrong_at(5), expert, None)
    with pytest.raises(ValueError, match="no real steps"):
        only_loop = demonstration([], absorbing_rows=2)
        demonstration_action_error(wrong_at(0), only_loop, 0.99)
