"""Implicit Q-Learning (Kostrikov et al. 2022) with TorchRL's IQLLoss, on the union with the imperfect reward."""
from __future__ import annotations

from ..baselines import IQLUpdate, make_qvalue_network
from ..modules import make_actor, make_value_network
from .base import Algorithm, AlgorithmError, Learner, check_positive, register

__all__ = ["IQL"]


@register
class IQL(Algorithm):
    """Trusts the reward it is given; extracts the policy by advantage-weighted log-likelihood."""

    name = "iql"
    actor = "stochastic"

    def validate(self, algo) -> None:
        super().validate(algo)
        check_positive(algo, "value_lr", "temperature", "tau")
        if not 0 < algo.expectile < 1:
            raise AlgorithmError(f"algo.expectile must lie in (0, 1), got {algo.expectile}.")
        if not 0 < algo.gamma < 1:
            raise AlgorithmError(f"algo.gamma must lie in (0, 1), got {algo.gamma}.")

    def build(self, cfg, data, device) -> Learner:
        a, hidden = cfg.algo, tuple(cfg.algo.hidden)
        value = make_value_network(data.obs_dim, hidden, device=device)
        actor = make_actor(data.obs_dim, data.action_dim, stochastic=True, hidden=hidden, device=device)
        qvalue = make_qvalue_network(data.obs_dim, data.action_dim, hidden, device=device)
        update = IQLUpdate(actor, qvalue, value, expectile=a.expectile, temperature=a.temperature, gamma=a.gamma,
                           tau=a.tau, lr=a.value_lr, actor_lr=a.actor_lr, total_steps=cfg.budget.updates,
                           compile=self.compile(cfg), compile_mode=cfg.compile_mode)
        return Learner(actor=actor, update=update, networks={"value": value, "actor": actor})
