"""A small deterministic tabular MDP and an independent (primal, scipy) solution of the lower level."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn


class TabularMDP:
    """Deterministic transitions ``next_state[s, a]``, reward ``r[s, a]``, uniform mu0 and d^D."""

    def __init__(self, n_states=5, n_actions=2, gamma=0.9, seed=0):
        rng = np.random.default_rng(seed)
        self.S, self.A, self.gamma = n_states, n_actions, gamma
        self.next_state = rng.integers(0, n_states, size=(n_states, n_actions))
        self.reward = rng.normal(size=(n_states, n_actions))
        self.mu0 = np.full(n_states, 1.0 / n_states)
        self.d_data = np.full((n_states, n_actions), 1.0 / (n_states * n_actions))

    # --- the batch the losses see: every (s, a) once, mu0 as each state repeated A times ----------
    def batch(self, reward=None, dtype=torch.float64) -> TensorDict:
        S, A = self.S, self.A
        s = np.repeat(np.arange(S), A)
        a = np.tile(np.arange(A), S)
        eye = torch.eye(S, dtype=dtype)
        reward = self.reward if reward is None else reward
        return TensorDict(
            {
                "observation": eye[s],
                "initial_observation": eye[s],  # uniform mu0 over states
                "action": torch.eye(A, dtype=dtype)[a],
                "pair": torch.eye(S * A, dtype=dtype),
                "next": {
                    "observation": eye[self.next_state[s, a]],
                    "reward": torch.as_tensor(reward[s, a], dtype=dtype).unsqueeze(-1),
                    "done": torch.zeros(S * A, 1, dtype=torch.bool),
                },
            },
            [S * A],
        )

    def tabular_value(self, dtype=torch.float64) -> TensorDictModule:
        net = nn.Linear(self.S, 1, bias=False, dtype=dtype)
        nn.init.zeros_(net.weight)
        return TensorDictModule(net, ["observation"], ["state_value"])

    def flow_matrix(self):
        """Rows: states. (M d)(s) = sum_a d(s,a) - gamma sum_{s',a'} 1[T(s',a') = s] d(s',a')."""
        S, A = self.S, self.A
        M = np.zeros((S, S * A))
        for s in range(S):
            for a in range(A):
                M[s, s * A + a] += 1.0
                M[self.next_state[s, a], s * A + a] -= self.gamma
        return M

    def primal_weights(self, f, alpha, reward=None, lower=0.0):
        """argmax_d E_d[r] - alpha D_f(d || d^D) s.t. Bellman flow, solved with SLSQP; returns d / d^D."""
        reward = (self.reward if reward is None else reward).reshape(-1)
        dD = self.d_data.reshape(-1)
        M, b = self.flow_matrix(), (1 - self.gamma) * self.mu0

        def objective(d):
            return -(d @ reward - alpha * np.sum(dD * f(d / dD)))

        x0 = dD.copy()
        res = minimize(
            objective,
            x0,
            method="SLSQP",
            constraints=[{"type": "eq", "fun": lambda d: M @ d - b, "jac": lambda d: M}],
            bounds=[(lower, None)] * len(dD),
            options={"ftol": 1e-14, "maxiter": 2000},
        )
        assert res.success, res.message
        return res.x / dD

    def expert_visitation(self, policy):
        """Normalised discounted visitation d(s, a) of a deterministic policy (array of actions)."""
        S, A, g = self.S, self.A, self.gamma
        P = np.zeros((S, S))
        for s in range(S):
            P[s, self.next_state[s, policy[s]]] = 1.0
        d_s = (1 - g) * np.linalg.solve(np.eye(S) - g * P.T, self.mu0)
        d = np.zeros((S, A))
        d[np.arange(S), policy] = d_s
        return d

    def optimal_policy(self, reward=None):
        reward = self.reward if reward is None else reward
        Q = np.zeros((self.S, self.A))
        for _ in range(2000):
            V = Q.max(1)
            Q = reward + self.gamma * V[self.next_state]
        return Q.argmax(1)


KL_F = lambda x: x * np.log(np.maximum(x, 1e-300))  # noqa: E731
CHI2_F = lambda x: 0.5 * (x - 1) ** 2  # noqa: E731


def soft_chi2_f(x):
    return np.where(x < 1, x * np.log(np.maximum(x, 1e-300)) - x + 1, 0.5 * (x - 1) ** 2)


def minimise_value_loss(loss, td, params, iters=200):
    opt = torch.optim.LBFGS(params, lr=1, max_iter=iters, tolerance_grad=1e-13,
                            tolerance_change=1e-15, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        out = loss(td.clone(False))
        out["loss_value"].backward()
        return out["loss_value"]

    for _ in range(5):
        opt.step(closure)
    return loss(td)
