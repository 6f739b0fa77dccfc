"""TorchRL's key contract: ``reward``/``done``/the next observation read under ``"next"``, ``set_keys`` honoured by
every network read, ``in_keys`` derived from the networks, nothing written into the input batch."""
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from torchrl_rgm.modules import make_actor, make_reward_correction_network, make_value_network
from torchrl_rgm.objectives import RGMLoss

from ..conftest import ACT, OBS, random_batch

RENAMED = {"observation": "obs", "initial_observation": "s0", "action": "act", "reward": "rew", "done": "terminal",
           "log_density_ratio": "log_rho", "is_expert": "expert_flag"}


def renamed_batch(td):
    out = TensorDict({
        "obs": td["observation"], "s0": td["initial_observation"], "act": td["action"],
        "log_rho": td["log_density_ratio"], "expert_flag": td["is_expert"],
        ("next", "obs"): td["next", "observation"], ("next", "rew"): td["next", "reward"],
        ("next", "terminal"): td["next", "done"],
    }, td.batch_size)
    return out


@pytest.mark.parametrize("stochastic", [False, True])
def test_renaming_every_key_gives_the_same_numbers(stochastic):
    torch.manual_seed(0)
    loss = RGMLoss(make_value_network(OBS, hidden=(16,)), make_actor(OBS, ACT, stochastic=stochastic, hidden=(16,)),
                   make_reward_correction_network(OBS, ACT, hidden=(16,)))
    td = random_batch(32)
    torch.manual_seed(1)
    default = loss(td.clone())
    default_values = loss.transition_values(td.clone())
    loss.set_keys(**RENAMED)
    renamed = renamed_batch(td)
    assert not ({"observation", "action", "initial_observation", ("next", "reward")} & set(renamed.keys(True, True)))
    torch.manual_seed(1)
    out = loss(renamed)
    assert set(out.keys()) == set(default.keys())
    for key in default.keys():
        torch.testing.assert_close(out[key], default[key], rtol=0, atol=0, msg=key)
    for key, value in loss.transition_values(renamed).items():
        torch.testing.assert_close(value, default_values[key], rtol=0, atol=0, msg=key)
    assert set(loss.in_keys) == {"obs", ("next", "obs"), "s0", "act", ("next", "rew"), ("next", "terminal"), "log_rho"}
    # every term's gradient still flows on the renamed batch
    out["loss_reward_correction"].backward()
    assert all(p.grad is not None for p in loss.reward_correction_network.parameters())


def test_in_keys_come_from_the_networks():
    """A correction network that reads an extra entry (a goal, say) adds it to the loss's in_keys and gets it."""
    value, actor = make_value_network(OBS, hidden=(8,)), make_actor(OBS, ACT, hidden=(8,))

    class WithGoal(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(OBS + ACT + 1 + 2, 1)

        def forward(self, obs, action, reward, goal):
            return self.net(torch.cat([obs, action, reward, goal], -1))

    correction = TensorDictModule(WithGoal(), ["observation", "action", ("next", "reward"), "goal"], ["logit"])
    loss = RGMLoss(value, actor, correction)
    assert "goal" in loss.in_keys and "log_density_ratio" in loss.in_keys
    assert "log_density_ratio" not in RGMLoss(value, actor).in_keys  # read only to learn Δr
    td = random_batch(16)
    with pytest.raises(KeyError, match="'goal'"):
        loss(td)
    td["goal"] = torch.randn(16, 2)
    assert torch.isfinite(loss(td)["loss_reward_correction"])


def test_reward_and_done_are_read_under_next():
    loss = RGMLoss(make_value_network(OBS, hidden=(8,)), make_actor(OBS, ACT, hidden=(8,)))
    assert (loss.tensor_keys.reward, loss.tensor_keys.done) == ("reward", "done")
    td = random_batch(16)
    base = loss(td.clone())["loss_value"]
    td["reward"] = torch.full((16, 1), 100.0)  # a root-level "reward" is not the transition's reward
    torch.testing.assert_close(loss(td)["loss_value"], base)
    td["next", "reward"] = td["next", "reward"] + 1.0
    assert not torch.allclose(loss(td)["loss_value"], base)
