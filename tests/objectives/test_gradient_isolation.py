"""TorchRL's test: each loss_* back-propagated alone reaches only its own network."""
import pytest
import torch
from tensordict import TensorDict

from torchrl_rgm.modules import (
    make_actor,
    make_discriminator,
    make_reward_correction_network,
    make_value_network,
)
from torchrl_rgm.objectives import DiscriminatorLoss, RewardCorrectionLoss, RGMLoss

from ..conftest import ACT, OBS, random_batch


def build(stochastic):
    value = make_value_network(OBS, hidden=(32, 32))
    actor = make_actor(OBS, ACT, stochastic=stochastic, hidden=(32, 32))
    correction = make_reward_correction_network(OBS, ACT, hidden=(32, 32))
    lower = RGMLoss(value, actor, correction)
    upper = RewardCorrectionLoss(correction, value)
    owners = {
        "loss_value": value,
        "loss_actor": actor,
        "loss_reward_correction": correction,
    }
    return lower, upper, owners, [value, actor, correction]


def grads_by_network(networks, extra=()):
    touched = []
    for i, net in enumerate(networks):
        if any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters()):
            touched.append(i)
    for j, p in enumerate(extra):
        if p.grad is not None and p.grad.abs().sum() > 0:
            touched.append(len(networks) + j)
    return touched


def zero(*params_sources):
    for src in params_sources:
        for p in src.parameters():
            p.grad = None


@pytest.mark.parametrize("stochastic", [False, True])
@pytest.mark.parametrize("reuse", [True, False], ids=["shared-pass", "standalone"])
def test_each_loss_reaches_only_its_network(stochastic, reuse):
    lower, upper, owners, networks = build(stochastic)
    upper.reuse = reuse
    extra = [lower.log_entropy_coef] if lower.learn_entropy_coef else []
    keys = ["loss_value", "loss_actor", "loss_reward_correction"] + (["loss_entropy_coef"] if extra else [])
    for key in keys:
        zero(lower, upper)
        td = random_batch()
        out = lower(td)
        out.update(upper(td))
        out[key].backward()
        touched = grads_by_network(networks, extra)
        expected = [len(networks)] if key == "loss_entropy_coef" else [networks.index(owners[key])]
        assert touched == expected, (key, touched)


def test_every_parameter_of_the_owner_receives_gradient():
    lower, upper, owners, _ = build(stochastic=False)
    for key, net in owners.items():
        zero(lower, upper)
        td = random_batch()
        out = lower(td)
        out.update(upper(td))
        out[key].backward()
        for name, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (key, name)


def test_correction_loss_does_not_own_the_value_network():
    _, upper, _, _ = build(stochastic=False)
    names = [n for n, _ in upper.named_parameters()]
    assert names and all(n.startswith("reward_correction_network.") for n in names)


def test_without_correction_network_reward_is_used_as_is():
    value = make_value_network(OBS, hidden=(32, 32))
    actor = make_actor(OBS, ACT, hidden=(32, 32))
    lower = RGMLoss(value, actor)
    td = random_batch()
    out = lower(td)
    assert out["reward_correction"] == 0
    torch.testing.assert_close(out["corrected_reward"], td["next", "reward"].mean())


def test_discriminator_losses_reach_only_the_discriminator():
    disc = make_discriminator(OBS, ACT, hidden=(32, 32))
    other = make_value_network(OBS, hidden=(32, 32))
    loss = DiscriminatorLoss(disc)
    td = random_batch()
    for key in ("loss_discriminator", "loss_gradient_penalty"):
        zero(disc, other)
        out = loss(TensorDict(expert=td[:10], union=td))
        out[key].backward()
        assert grads_by_network([disc, other]) == [0]
