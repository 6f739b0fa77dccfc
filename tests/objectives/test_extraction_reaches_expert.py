"""Where the expert's data suffice, RGM's extraction must approach BC on the expert: a chain with a way to die.

The chain: states 0..S-1, action 0 advances (the last state loops), action 1 terminates. The expert advances from
state 0 for ever; ``D`` holds every (state, action) once, the terminal transitions made absorbing by the package's
own :func:`~torchrl_rgm.data.absorbing.add_absorbing_states`. BC on the expert always advances, so RGM's
weighted BC should too: its probability of advancing, and the expert's share of its weight, near 1.

Two things decide it (measured on hopper medium-replay: docs/results.md, "Why RGM's weights missed the expert"):

- **The absorbing state must last for ever** (``data.terminal_absorbing_loop=false``, DAC / ValueDICE). With the
  reference code's self-loop that ends the episode, dying removes the visitation's mass instead of putting it where
  ``d^E`` has none, so visitation matching does not see it, and a ratio below 1 on the states ahead makes dying look
  cheap.
- **The ratio must be calibrated** (``algo.density_ratio_temperature=auto``): an under-confident discriminator (here
  the exact log-ratio times 0.3) spreads the expert's weight over ``D``; the maximum-likelihood temperature
  (:func:`~torchrl_rgm.train.fit_ratio_temperature`) restores it.
"""
import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from torchrl_rgm.data.absorbing import add_absorbing_states
from torchrl_rgm.objectives import RGMLoss
from torchrl_rgm.train import fit_ratio_temperature

from .tabular import minimise_value_loss

S, GAMMA = 6, 0.9


def chain_data(forever: bool, reward_die: float = 0.0) -> TensorDict:
    rows = [(s, a) for s in range(S) for a in range(2)]
    eye = torch.eye(S, dtype=torch.float64)
    td = TensorDict({
        "observation": eye[[s for s, _ in rows]],
        "action": torch.eye(2, dtype=torch.float64)[[a for _, a in rows]],
        "next": {"observation": eye[[min(s + 1, S - 1) if a == 0 else s for s, a in rows]],
                 "reward": torch.tensor([[reward_die * (a == 1)] for _, a in rows], dtype=torch.float64),
                 "terminated": torch.tensor([[a == 1] for _, a in rows]),
                 "done": torch.tensor([[a == 1] for _, a in rows])},
    }, [len(rows)])
    td = add_absorbing_states(td, terminal_loop=not forever)
    td.set("initial_observation", torch.eye(S + 1, dtype=torch.float64)[[0] * td.shape[0]])  # mu0: state 0
    td.set("pair", torch.eye(td.shape[0], dtype=torch.float64))
    return td


def expert_visitation(td: TensorDict) -> np.ndarray:
    """The expert's normalised discounted visitation on the rows of ``td`` (it advances from state 0 for ever)."""
    state = td["observation"][:, :S].argmax(-1).numpy()
    real = ~td["absorbing"].reshape(-1).numpy()
    advance = (td["action"][:, 0].numpy() == 1) & real
    d = np.where(advance, (1 - GAMMA) * GAMMA ** state.astype(float), 0.0)
    d[advance & (state == S - 1)] = GAMMA ** (S - 1)
    return d


def extract(forever: bool, confidence: float, calibrate: bool, reward_die: float = 0.0,
            anchor: bool = False) -> tuple[np.ndarray, float]:
    """RGM (both levels; the reward 0, or ``reward_die`` for dying) on the chain; ``(P(advance | s) for each s,
    expert's share of the weight)``."""
    td = chain_data(forever, reward_die)
    n = td.shape[0]
    d_expert, d_data = expert_visitation(td), np.full(n, 1.0 / n)
    log_rho = confidence * np.log((0.99 * d_expert + 0.01 * d_data) / d_data)  # an under-confident discriminator
    if calibrate:  # the expert's sample: rows in proportion to its visitation
        expert_rows = np.repeat(np.arange(n), np.round(d_expert * 10_000).astype(int))
        log_rho = log_rho * fit_ratio_temperature(torch.as_tensor(log_rho), torch.as_tensor(log_rho[expert_rows]))
    log_rho = log_rho - np.log(np.mean(np.exp(log_rho)))
    td.set("log_density_ratio", torch.as_tensor(log_rho).unsqueeze(-1))
    value = TensorDictModule(nn.Linear(S + 1, 1, bias=False, dtype=torch.float64), ["observation"], ["state_value"])
    nn.init.zeros_(value.module.weight)
    actor = TensorDictModule(nn.Linear(S + 1, 2, bias=False, dtype=torch.float64), ["observation"], ["action"])
    correction = TensorDictModule(nn.Linear(n, 1, bias=False, dtype=torch.float64), ["pair"], ["logit"])
    nn.init.zeros_(correction.module.weight)
    loss = RGMLoss(value, actor, correction, divergence="kl", alpha=0.5, gamma=GAMMA, res_scale=3.0,
                   advantage_clip=None, weight_clip=None, correction_anchor=anchor)
    opt = torch.optim.Adam(correction.parameters(), lr=0.1)
    for _ in range(5):  # two time-scales: V solved with Δr fixed, then Δr moves with V fixed
        minimise_value_loss(loss, td.clone(), list(value.parameters()), iters=100)
        for _ in range(60):
            opt.zero_grad()
            loss.reward_correction_loss(td.clone()).backward()
            opt.step()
    minimise_value_loss(loss, td.clone(), list(value.parameters()), iters=100)
    w = loss.transition_values(td)["visitation_weight"].reshape(-1).numpy()
    real = ~td["absorbing"].reshape(-1).numpy()
    state = td["observation"][:, :S].argmax(-1).numpy()
    advance = td["action"][:, 0].numpy() == 1
    p_advance = np.array([w[real & advance & (state == s)].sum() / w[real & (state == s)].sum() for s in range(S)])
    return p_advance, float(w[d_expert > 0].sum() / w.sum())


def test_with_an_exact_ratio_and_an_absorbing_state_that_lasts_rgm_is_bc_on_the_expert():
    p_advance, share = extract(forever=True, confidence=1.0, calibrate=False)
    assert p_advance.min() > 0.99 and share > 0.99, (p_advance, share)


def test_an_absorbing_loop_that_ends_the_episode_lets_rgm_die():
    # the reference code's convention against DAC's, the same under-confident ratio; measured P(advance) at its
    # lowest 0.77 (ending) vs 0.89 (lasting), and in the first four states 0.86-0.89 vs 0.99-1.0
    ending = extract(forever=False, confidence=0.3, calibrate=False)
    lasting = extract(forever=True, confidence=0.3, calibrate=False)
    assert ending[0].min() < lasting[0].min() - 0.05, (ending, lasting)
    assert ending[0][:4].max() < 0.95 < lasting[0][:4].min(), (ending, lasting)


def test_an_under_confident_ratio_spreads_the_weight_and_the_temperature_fit_restores_it():
    raw = extract(forever=True, confidence=0.3, calibrate=False)
    calibrated = extract(forever=True, confidence=0.3, calibrate=True)
    print(dict(raw=raw, calibrated=calibrated))
    assert raw[1] < 0.8, raw  # most weight still on the expert's rows, far from all of it
    assert calibrated[1] > 0.95 and calibrated[1] > raw[1] + 0.15, (raw, calibrated)
    assert calibrated[0].min() > 0.97, calibrated


def test_a_wrong_reward_beyond_the_bound_is_undone_by_the_anchored_correction_only():
    """A reward that pays 50 for dying, more than the bound ``res_scale = 3`` can outweigh even on every later
    step (3 / (1 - gamma) = 30): the paper's correction, centred at 0, cannot undo it and RGM dies in some states;
    centred at the upper level's minimiser (``correction_anchor``) the lower level starts at ``w = rho`` and stays
    there: BC on the expert."""
    bounded = extract(forever=True, confidence=1.0, calibrate=False, reward_die=50.0)
    anchored = extract(forever=True, confidence=1.0, calibrate=False, reward_die=50.0, anchor=True)
    print(dict(bounded=bounded, anchored=anchored))
    assert anchored[0].min() > 0.99 and anchored[1] > 0.99, anchored
    assert bounded[0].min() < 0.9 and bounded[1] < 0.9, bounded
