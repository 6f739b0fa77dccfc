"""The lower level against an independent solution of its primal on a tabular MDP."""
import numpy as np
import pytest
import torch
from tensordict.nn import TensorDictModule
from torch import nn

from torchrl_rgm.objectives import RGMLoss

from .tabular import CHI2_F, KL_F, TabularMDP, minimise_value_loss, soft_chi2_f

# Stated tolerance: max |w_dual - w_primal| over all (s, a).
TOLERANCE = 1e-5  # achieved: ≤ 4e-7 for every divergence

CASES = [
    ("kl", KL_F, 1e-12),
    ("kl_logmeanexp", KL_F, 1e-12),
    ("chi2", CHI2_F, 0.0),
    ("soft_chi2", soft_chi2_f, 1e-12),
]


def dummy_actor(mdp):
    return TensorDictModule(nn.Linear(mdp.S, mdp.A, dtype=torch.float64), ["observation"], ["action"])


@pytest.mark.parametrize("name,f,lower", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("alpha", [0.3, 1.0, 3.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_dual_weights_match_primal_solution(name, f, lower, alpha, seed):
    mdp = TabularMDP(seed=seed)
    value = mdp.tabular_value()
    loss = RGMLoss(value, dummy_actor(mdp), divergence=name, alpha=alpha, gamma=mdp.gamma,
                   advantage_clip=None)
    td = mdp.batch()
    minimise_value_loss(loss, td, list(value.parameters()))
    w_dual = loss.transition_values(td)["visitation_weight"].squeeze(-1).numpy()
    w_primal = mdp.primal_weights(f, alpha, lower=lower)
    assert np.max(np.abs(w_dual - w_primal)) < TOLERANCE, (w_dual, w_primal)
    # the dual's weights are a valid visitation: they satisfy the Bellman flow
    d = w_dual * mdp.d_data.reshape(-1)
    np.testing.assert_allclose(mdp.flow_matrix() @ d, (1 - mdp.gamma) * mdp.mu0, atol=1e-5)


def test_weights_follow_the_reward_as_alpha_shrinks():
    """Little pessimism: the visitation concentrates on the optimal policy's actions."""
    mdp = TabularMDP(seed=3)
    value = mdp.tabular_value()
    loss = RGMLoss(value, dummy_actor(mdp), divergence="chi2", alpha=0.05, gamma=mdp.gamma,
                   advantage_clip=None)
    td = mdp.batch()
    minimise_value_loss(loss, td, list(value.parameters()))
    w = loss.transition_values(td)["visitation_weight"].view(mdp.S, mdp.A).numpy()
    pi_star = mdp.optimal_policy()
    visited = w.sum(1) > 1e-3
    assert visited.any()
    assert np.all(w[visited].argmax(1) == pi_star[visited])
