"""Upper level on a toy problem: a negated reward is corrected towards the expert's visitation."""
import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from torchrl_rgm.objectives import RGMLoss

from .tabular import TabularMDP, minimise_value_loss
from .zero_start import zero_start_networks


def distance_to_expert(w, d_data, d_expert):
    """Total variation between the learned visitation w d^D and the expert's d^E.

    (KL(w d^D || d^E) is infinite as soon as w d^D leaves the deterministic expert's support.)
    """
    d = w * d_data
    d = d / d.sum()
    return 0.5 * float(np.abs(d - d_expert).sum())


@pytest.mark.parametrize("divergence", ["kl", "chi2"])
def test_training_the_correction_moves_the_visitation_towards_the_expert(divergence):
    mdp = TabularMDP(n_states=6, n_actions=2, gamma=0.9, seed=4)
    expert_policy = mdp.optimal_policy()
    d_expert = mdp.expert_visitation(expert_policy).reshape(-1)
    d_data = mdp.d_data.reshape(-1)
    # D = D^O ∪ D^E: d^D is a mixture, so rho = d^E/d^D is finite everywhere
    d_union = 0.8 * d_data + 0.2 * d_expert
    mdp.d_data = d_union.reshape(mdp.S, mdp.A)

    td = mdp.batch(reward=-mdp.reward)  # completely incorrect reward
    # d^D is not uniform any more: weight each (s, a) by replicating rows in proportion
    counts = np.maximum(np.round(d_union * 400).astype(int), 1)
    index = torch.as_tensor(np.repeat(np.arange(len(d_union)), counts))
    td = td[index]
    d_batch = np.bincount(index.numpy(), minlength=len(d_union)) / len(index)
    td["initial_observation"] = torch.eye(mdp.S, dtype=torch.float64)[
        torch.arange(len(index)) % mdp.S
    ]
    td["log_density_ratio"] = torch.as_tensor(np.log(d_expert / d_batch + 1e-300)).clamp(min=-20)[index].unsqueeze(-1)

    value = mdp.tabular_value()
    correction_net = TensorDictModule(nn.Linear(mdp.S * mdp.A, 1, bias=False, dtype=torch.float64), ["pair"], ["logit"])
    nn.init.zeros_(correction_net.module.weight)
    actor = TensorDictModule(nn.Linear(mdp.S, mdp.A, dtype=torch.float64), ["observation"], ["action"])
    loss = RGMLoss(value, actor, correction_net, divergence=divergence, alpha=1.0, gamma=mdp.gamma,
                   advantage_clip=None)
    opt = torch.optim.Adam(correction_net.parameters(), lr=0.05)

    def solve_lower():
        batch = td.clone()
        minimise_value_loss(loss, batch, list(value.parameters()), iters=100)
        w = loss.transition_values(batch)["visitation_weight"].squeeze(-1).numpy()
        per_pair = np.bincount(index.numpy(), weights=w, minlength=len(d_union)) / np.maximum(
            np.bincount(index.numpy(), minlength=len(d_union)), 1
        )
        return distance_to_expert(per_pair, d_batch, d_expert), batch

    before, _ = solve_lower()
    history = [before]
    for _ in range(15):  # two time-scales: V solved to convergence, then a few steps on Δr
        for _ in range(10):
            opt.zero_grad()
            loss.reward_correction_loss(td.clone()).backward()
            opt.step()
        after, _ = solve_lower()
        history.append(after)
    print(divergence, np.round(history, 3))
    assert history[-1] < 0.5 * before, history
    # the learned correction opposes the negation where the expert acts
    delta = 3.0 * torch.tanh(correction_net.module.weight.detach().squeeze(0)).numpy()
    on_expert = d_expert > 1e-3
    corr = np.corrcoef(delta[on_expert], mdp.reward.reshape(-1)[on_expert])[0, 1]
    assert corr > 0, corr


def test_normalised_weights_ignore_a_shift_of_the_whole_correction():
    """With V held fixed, the mass of w cannot really change; the normalised objective sees only its shape.

    For KL a shift of Δr multiplies w = exp(A - 1) by a constant, which the normalisation removes.

    Unnormalised, a w above rho on most of D pushes every Δr down together (the saturation seen on
    halfcheetah); normalised, the gradient along a uniform shift of Δr is zero.
    """
    torch.manual_seed(0)
    n, obs_dim = 256, 4
    td = TensorDict({
        "observation": torch.randn(n, obs_dim), "action": torch.randn(n, 1),
        ("next", "observation"): torch.randn(n, obs_dim), ("next", "reward"): torch.randn(n, 1),
        ("next", "done"): torch.zeros(n, 1, dtype=torch.bool),
        "log_density_ratio": torch.randn(n, 1) - 1.5,  # most transitions under-represented by the expert
        "initial_observation": torch.randn(n, obs_dim),
    }, [n])
    actor = TensorDictModule(nn.Linear(obs_dim, 1), ["observation"], ["action"])
    value = TensorDictModule(nn.Linear(obs_dim, 1), ["observation"], ["state_value"])
    shift = nn.Parameter(torch.zeros(()))

    class Shifted(nn.Module):  # Δr = pre-tanh net + a shared shift
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(obs_dim + 2, 1)
            self.shift = shift

        def forward(self, obs, action, reward):
            return self.net(torch.cat([obs, action, reward], -1)) + self.shift

    correction = TensorDictModule(Shifted(), ["observation", "action", ("next", "reward")], ["logit"])
    grads = {}
    for normalize in (True, False):
        loss = RGMLoss(value, actor, correction, divergence="kl", correction_normalize_weights=normalize)
        shift.grad = None
        loss.reward_correction_loss(td.clone()).backward()
        grads[normalize] = shift.grad.item()
    # a pure shift of the pre-tanh output is not exactly a shift of Δr (tanh), so compare sizes
    assert abs(grads[True]) < 0.1 * abs(grads[False]), grads


@pytest.mark.parametrize("divergence", ["kl", "chi2", "soft_chi2", "kl_logmeanexp"])
def test_anchored_correction_starts_at_the_upper_levels_minimiser(divergence):
    """``correction_anchor``: with V at 0 and the network's output at 0, the lower level's weights are rho itself
    (w d^D = d^E, what the upper level asks for), whatever the reward, and the upper level's gradient vanishes
    there; unanchored, the same networks give w = f*'(r~ / alpha), which ignores rho."""
    torch.manual_seed(0)
    n, obs_dim = 256, 4
    log_ratio = torch.randn(n, 1) * 2.0
    log_ratio = log_ratio - torch.logsumexp(log_ratio, 0) + np.log(n)  # calibrated: E_D[rho] = 1
    td = TensorDict({
        "observation": torch.randn(n, obs_dim), "action": torch.randn(n, 1),
        ("next", "observation"): torch.randn(n, obs_dim), ("next", "reward"): -3.0 * torch.randn(n, 1),
        ("next", "done"): torch.zeros(n, 1, dtype=torch.bool), "log_density_ratio": log_ratio,
        "initial_observation": torch.randn(n, obs_dim),
    }, [n])
    value, actor, correction, net = zero_start_networks(obs_dim)
    rho = log_ratio.exp()
    for anchor in (True, False):
        loss = RGMLoss(value, actor, correction, divergence=divergence, alpha=0.5, correction_anchor=anchor,
                       advantage_clip=None)
        w = loss.transition_values(td.clone()).get("visitation_weight")
        if divergence == "kl_logmeanexp":
            w = w / w.mean()
        if anchor:
            torch.testing.assert_close(w, rho, rtol=1e-4, atol=1e-5)
            net.zero_grad()
            loss.reward_correction_loss(td.clone()).backward()
            assert net.weight.grad.abs().max() < 1e-4 and net.bias.grad.abs().max() < 1e-4
        else:
            assert (w - rho).abs().max() > 0.5


def test_anchored_correction_needs_a_correction_network():
    actor = TensorDictModule(nn.Linear(3, 1), ["observation"], ["action"])
    value = TensorDictModule(nn.Linear(3, 1), ["observation"], ["state_value"])
    with pytest.raises(ValueError, match="reward_correction_network"):
        RGMLoss(value, actor, None, correction_anchor=True)
