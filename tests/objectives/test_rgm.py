"""RGMLoss against hand-written formulas on one batch."""
import math

import pytest
import torch

from torchrl_rgm.modules import make_actor, make_reward_correction_network, make_value_network
from torchrl_rgm.objectives import RGMLoss

from ..conftest import ACT, OBS, random_batch


def manual(value, actor, correction, td, alpha=0.5, gamma=0.99, res_scale=3.0, clip=100.0):
    v0 = value.module(td["initial_observation"])
    v = value.module(td["observation"])
    v_next = value.module(td["next", "observation"])
    r = td["next", "reward"]
    dr = res_scale * torch.tanh(correction.module(td["observation"], td["action"], r))
    not_done = 1.0 - td["next", "done"].float()
    adv = (r + dr + gamma * not_done * v_next - v) / alpha
    loss_value = (1 - gamma) * v0.mean() + alpha * torch.exp(adv - 1).mean()
    w = torch.exp(adv.detach() - 1)
    bc = w.clamp(max=clip)
    bc = bc / bc.mean()
    loss_actor = (bc * (actor.module(td["observation"]) - td["action"]).pow(2).sum(-1, keepdim=True)).mean()
    return loss_value, loss_actor, w


def test_matches_the_equations():
    value, actor = make_value_network(OBS, hidden=(32,)), make_actor(OBS, ACT, hidden=(32,))
    correction = make_reward_correction_network(OBS, ACT, hidden=(32,))
    loss = RGMLoss(value, actor, correction)
    td = random_batch(64)
    out = loss(td)
    loss_value, loss_actor, w = manual(value, actor, correction, td)
    torch.testing.assert_close(out["loss_value"], loss_value)
    torch.testing.assert_close(out["loss_actor"], loss_actor)
    torch.testing.assert_close(loss.transition_values(td)["visitation_weight"], w)
    expert = td["is_expert"]
    torch.testing.assert_close(out["weight_expert"], w[expert].mean())
    torch.testing.assert_close(out["weight_union"], w[~expert].mean())


def test_terminal_transitions_do_not_bootstrap():
    value, actor = make_value_network(OBS, hidden=(32,)), make_actor(OBS, ACT, hidden=(32,))
    loss = RGMLoss(value, actor)
    td = random_batch(64)
    td["next", "done"][:] = False
    td["next", "done"][:10] = True
    base = loss(td.clone())["loss_value"]
    moved = td.clone()
    moved["next", "observation"][:10] += 5.0  # s' of terminal transitions is irrelevant
    torch.testing.assert_close(loss(moved)["loss_value"], base)
    moved["next", "observation"][10:11] += 5.0  # ... but not of the others
    assert not torch.allclose(loss(moved)["loss_value"], base)


def test_weight_clipping_and_normalisation_options():
    value, actor = make_value_network(OBS, hidden=(32,)), make_actor(OBS, ACT, hidden=(32,))
    td = random_batch(64)
    td["next", "reward"] = torch.linspace(-3, 6, 64).unsqueeze(-1)  # weights spanning e^-7..e^11
    raw = RGMLoss(value, actor, weight_clip=None, normalize_weights=False, advantage_clip=None)
    w = raw.transition_values(td)["visitation_weight"]
    err = (actor.module(td["observation"]) - td["action"]).pow(2).sum(-1, keepdim=True)
    torch.testing.assert_close(raw(td)["loss_actor"], (w * err).mean())
    clipped = RGMLoss(value, actor, weight_clip=2.0, normalize_weights=False, advantage_clip=None)
    torch.testing.assert_close(clipped(td)["loss_actor"], (w.clamp(max=2.0) * err).mean())


def test_tanh_gaussian_log_likelihood_and_entropy_target():
    value = make_value_network(OBS, hidden=(32,))
    actor = make_actor(OBS, ACT, stochastic=True, hidden=(32,))
    loss = RGMLoss(value, actor, entropy_coef=None, normalize_weights=False, weight_clip=None)
    td = random_batch(64)
    out = loss(td)
    dist = actor.get_dist(td.select("observation"))
    log_prob = dist.log_prob(td["action"].clamp(-1 + 1e-5, 1 - 1e-5)).unsqueeze(-1)
    torch.testing.assert_close(out["loss_actor"], -(loss.transition_values(td)["visitation_weight"] * log_prob).mean())
    auto = RGMLoss(value, actor)
    assert auto.target_entropy == -ACT and auto.learn_entropy_coef
    assert RGMLoss(value, actor, target_entropy=-1.5).target_entropy == -1.5
    assert "loss_entropy_coef" in auto(td).keys()


@pytest.mark.parametrize("divergence", ["chi2", "soft_chi2"])
def test_other_divergences_use_their_conjugate(divergence):
    value, actor = make_value_network(OBS, hidden=(32,)), make_actor(OBS, ACT, hidden=(32,))
    loss = RGMLoss(value, actor, divergence=divergence, alpha=2.0, advantage_clip=None)
    td = random_batch(64)
    out = loss(td)
    v0 = value.module(td["initial_observation"])
    v, vn = value.module(td["observation"]), value.module(td["next", "observation"])
    adv = (td["next", "reward"] + 0.99 * (1 - td["next", "done"].float()) * vn - v) / 2.0
    if divergence == "chi2":
        fstar, fprime = 0.5 * torch.relu(adv + 1) ** 2 - 0.5, torch.relu(adv + 1)
    else:
        fstar = torch.where(adv < 0, torch.exp(adv) - 1, 0.5 * adv**2 + adv)
        fprime = torch.where(adv < 0, torch.exp(adv), adv + 1)
    torch.testing.assert_close(out["loss_value"], 0.01 * v0.mean() + 2.0 * fstar.mean())
    torch.testing.assert_close(loss.transition_values(td)["visitation_weight"], fprime.detach())
    assert not math.isnan(out["advantage"].item())


@pytest.mark.parametrize("stochastic", [False, True])
def test_an_extraction_batch_is_cloned_unweighted_and_changes_nothing_else(stochastic):
    """Rows drawn in proportion to w (``"extraction"``): the actor's loss is plain BC on them — the deterministic
    actor's squared error, the tanh-Gaussian's log-likelihood and entropy term with the batch's own noise — while
    V's and Δr's losses, which read the uniform batch, do not change."""
    torch.manual_seed(0)
    value, actor = make_value_network(OBS, hidden=(32,)), make_actor(OBS, ACT, stochastic=stochastic, hidden=(32,))
    correction = make_reward_correction_network(OBS, ACT, hidden=(32,))
    loss = RGMLoss(value, actor, correction, action_dim=ACT)
    td, rows = random_batch(64), random_batch(64)
    td["actor_noise"] = torch.randn(64, ACT)
    plain = loss(td.clone())
    td["extraction"] = rows
    out = loss(td)
    for key in ("loss_value", "loss_reward_correction"):
        torch.testing.assert_close(out[key], plain[key])
    if not stochastic:
        expected = (actor.module(rows["observation"]) - rows["action"]).pow(2).sum(-1).mean()
    else:  # the same loss on the extraction rows with weights 1 (and the uniform batch's noise)
        reference = rows.clone()
        reference["actor_noise"] = td["actor_noise"]
        lone = RGMLoss(value, actor, correction, action_dim=ACT, weight_clip=None, normalize_weights=False)
        expected = lone._actor_losses(reference, torch.ones(64, 1))[0]
    torch.testing.assert_close(out["loss_actor"], expected)
    assert not torch.allclose(out["loss_actor"], plain["loss_actor"])
