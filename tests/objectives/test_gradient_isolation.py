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
from torchrl_rgm.objectives import DiscriminatorLoss, RGMLoss

from ..conftest import ACT, OBS, random_batch


def build(stochastic):
    value = make_value_network(OBS, hidden=(32, 32))
    actor = make_actor(OBS, ACT, stochastic=stochastic, hidden=(32, 32))
    correction = make_reward_correction_network(OBS, ACT, hidden=(32, 32))
    loss = RGMLoss(value, actor, correction)
    owners = {
        "loss_value": value,
        "loss_actor": actor,
        "loss_reward_correction": correction,
    }
    return loss, owners, [value, actor, correction]


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
@pytest.mark.parametrize("per_term", [False, True], ids=["one-pass", "per-term-method"])
def test_each_loss_reaches_only_its_network(stochastic, per_term):
    loss, owners, networks = build(stochastic)
    extra = [loss.log_entropy_coef] if loss.learn_entropy_coef else []
    keys = ["loss_value", "loss_actor", "loss_reward_correction"] + (["loss_entropy_coef"] if extra else [])
    methods = {"loss_value": loss.value_loss, "loss_actor": loss.actor_loss,
               "loss_reward_correction": loss.reward_correction_loss}
    for key in keys:
        zero(loss)
        td = random_batch()
        term = methods[key](td) if per_term and key in methods else loss(td)[key]
        term.backward()
        touched = grads_by_network(networks, extra)
        expected = [len(networks)] if key == "loss_entropy_coef" else [networks.index(owners[key])]
        assert touched == expected, (key, touched)


def test_every_parameter_of_the_owner_receives_gradient():
    loss, owners, _ = build(stochastic=False)
    for key, net in owners.items():
        zero(loss)
        td = random_batch()
        loss(td)[key].backward()
        for name, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (key, name)


def test_the_loss_writes_nothing_into_its_input():
    loss, _, _ = build(stochastic=True)
    td = random_batch()
    before = set(td.keys(True, True))
    loss(td)
    loss.transition_values(td)
    assert set(td.keys(True, True)) == before


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
