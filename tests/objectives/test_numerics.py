"""No NaN or inf for extreme rewards, extreme alpha, all-equal rewards."""
import pytest
import torch

from torchrl_rgm.modules import make_actor, make_reward_correction_network, make_value_network
from torchrl_rgm.objectives import DIVERGENCES, RGMLoss

from ..conftest import ACT, OBS, random_batch


def rewards(kind, n):
    if kind == "huge":
        return torch.tensor([1e6, -1e6]).repeat(n // 2).unsqueeze(-1)
    if kind == "equal":
        return torch.full((n, 1), 0.7)
    return torch.randn(n, 1)


@pytest.mark.parametrize("divergence", sorted(DIVERGENCES))
@pytest.mark.parametrize("alpha", [1e-3, 1.0, 1e3])
@pytest.mark.parametrize("reward", ["huge", "equal", "normal"])
@pytest.mark.parametrize("stochastic", [False, True])
def test_losses_and_gradients_stay_finite(divergence, alpha, reward, stochastic):
    value = make_value_network(OBS, hidden=(16, 16))
    actor = make_actor(OBS, ACT, stochastic=stochastic, hidden=(16, 16))
    correction = make_reward_correction_network(OBS, ACT, hidden=(16, 16))
    loss = RGMLoss(value, actor, correction, divergence=divergence, alpha=alpha)
    td = random_batch(64)
    td["next", "reward"] = rewards(reward, 64)
    td["log_density_ratio"] = torch.tensor([80.0, -80.0]).repeat(32).unsqueeze(-1)  # a wild discriminator
    td["action"][:4] = 1.0  # actions on the boundary of the tanh-Gaussian's support
    out = loss(td)
    for key, val in out.items():
        assert torch.isfinite(val).all(), (key, val)
    total = sum(v for k, v in out.items() if k.startswith("loss_"))
    total.backward()
    for module in (value, actor, correction):
        for name, p in module.named_parameters():
            assert p.grad is None or torch.isfinite(p.grad).all(), name
    assert torch.isfinite(loss.transition_values(td)["visitation_weight"]).all()
