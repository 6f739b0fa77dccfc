"""Where the lower level's ``s0 ~ mu0`` come from decides whether ``w = rho`` is a visitation at all.

A tabular world like medium-replay's start: ``K`` episodes of ``D`` begin in ``K`` start states (one of them the
expert's), and from each the union's action leads to a bad state that loops; the expert's trajectory runs from its
start through a chain into a state it stays in. ``D`` holds every row once; the ratio is exact. The anchored RGM
lower level (``Δr`` at the upper level's minimiser for ``V = 0``, so ``w = rho`` at the start) is solved for ``V``:

- ``mu0`` = the union's starts (DICE as written): the flow must carry ``(K - 1) / K`` of the visitation from the other
  starts along the union's actions, whatever ``V`` or ``Δr`` do: the expert's share of ``w`` is at most ``1 / K``.
- ``mu0`` = the expert's states uniformly: a visitation, but the expert's first state receives only ``(1 - gamma)``
  of what ``d^E`` gives it (no flow enters it).
- ``mu0`` = :func:`~torchrl_rgm.algorithms.base.expert_start_distribution` (``algo.initial_states=expert``): ``d^E``
  itself satisfies the flow, and ``w`` stays at ``rho``, the first state included.
"""
import numpy as np
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from torchrl_rgm.algorithms.base import expert_start_distribution
from torchrl_rgm.objectives import RGMLoss

from .tabular import minimise_value_loss

K, L, T, GAMMA = 4, 4, 60, 0.9
STARTS, CHAIN, BAD = list(range(K)), list(range(K, K + L)), K + L
S = K + L + 1


def world():
    """Rows ``(s, a, s')`` of ``D`` (action 0: the expert's, 1: the union's) and the expert's trajectory."""
    rows = [(u, 1, BAD) for u in STARTS] + [(BAD, 1, BAD), (STARTS[0], 0, CHAIN[0])]
    rows += [(c, 0, CHAIN[min(i + 1, L - 1)]) for i, c in enumerate(CHAIN)] + [(c, 1, BAD) for c in CHAIN]
    trajectory = [STARTS[0]] + CHAIN + [CHAIN[-1]] * (T - L - 1)  # T states; the last chain state loops
    return rows, trajectory


def lower_level_weights(mu0: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    rows, trajectory = world()
    eye = torch.eye(S, dtype=torch.float64)
    n = len(rows)
    d_expert = np.array([sum(1.0 / T for s in trajectory if (s, 0) == (r[0], r[1])) for r in rows])
    d_data = np.full(n, 1.0 / n)
    log_rho = np.log((0.999 * d_expert + 0.001 * d_data) / d_data)
    td = TensorDict({
        "observation": eye[[r[0] for r in rows]],
        # V is linear without bias: V(mu0 as a probability vector) = E_{s0 ~ mu0}[V(s0)]
        "initial_observation": torch.as_tensor(mu0, dtype=torch.float64).expand(n, S).clone(),
        "action": torch.eye(2, dtype=torch.float64)[[r[1] for r in rows]],
        "pair": torch.eye(n, dtype=torch.float64),
        "log_density_ratio": torch.as_tensor(log_rho).unsqueeze(-1),
        "next": {"observation": eye[[r[2] for r in rows]], "reward": torch.zeros(n, 1, dtype=torch.float64),
                 "done": torch.zeros(n, 1, dtype=torch.bool)},
    }, [n])
    value = TensorDictModule(nn.Linear(S, 1, bias=False, dtype=torch.float64), ["observation"], ["state_value"])
    nn.init.zeros_(value.module.weight)
    actor = TensorDictModule(nn.Linear(S, 2, bias=False, dtype=torch.float64), ["observation"], ["action"])
    correction = TensorDictModule(nn.Linear(n, 1, bias=False, dtype=torch.float64), ["pair"], ["logit"])
    nn.init.zeros_(correction.module.weight)
    loss = RGMLoss(value, actor, correction, divergence="kl", alpha=0.5, gamma=GAMMA, advantage_clip=None,
                   weight_clip=None, correction_anchor=True)
    minimise_value_loss(loss, td.clone(), list(value.parameters()), iters=300)
    w = loss.transition_values(td)["visitation_weight"].reshape(-1).numpy()
    return w, np.exp(log_rho), rows


def on_expert(rows):
    return np.array([a == 0 for _, a, _ in rows])


def share(w, rows):
    return float(w[on_expert(rows)].sum() / w.sum())


def test_from_the_unions_starts_the_flow_keeps_most_weight_off_the_expert():
    mu0 = np.zeros(S)
    mu0[STARTS] = 1.0 / K
    w, rho, rows = lower_level_weights(mu0)
    assert share(rho, rows) > 0.99
    assert share(w, rows) < 1.0 / K + 0.02, share(w, rows)


def test_from_the_experts_states_the_first_state_is_starved_and_the_start_distribution_restores_it():
    rows, trajectory = world()
    first = rows.index((STARTS[0], 0, CHAIN[0]))
    uniform = np.bincount(trajectory, minlength=S) / T
    w_uniform, rho, _ = lower_level_weights(uniform)
    starts = TensorDict({"observation": torch.eye(S, dtype=torch.float64)[trajectory],
                         "step": torch.arange(T)}, [T])
    mu0 = expert_start_distribution(starts, GAMMA).mean(0).numpy()
    assert np.isclose(mu0[STARTS[0]] / mu0[CHAIN[0]], 1.0 / (1.0 - GAMMA))  # the first state counted 1/(1-γ) times
    w, rho, _ = lower_level_weights(mu0)
    print(dict(uniform=w_uniform[first] / rho[first], corrected=w[first] / rho[first], share=share(w, rows)))
    assert w_uniform[first] / rho[first] < 2 * (1.0 - GAMMA)  # no flow enters it: (1 - γ) of rho
    assert share(w, rows) > 0.99
    expert = on_expert(rows)
    assert np.allclose(w[expert] / w[expert].sum(), rho[expert] / rho[expert].sum(), atol=0.02), (w, rho)
    assert 0.8 < (w[first] / w.sum()) / (rho[first] / rho.sum()) < 1.25
