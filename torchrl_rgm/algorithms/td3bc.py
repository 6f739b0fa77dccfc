"""TD3+BC (Fujimoto & Gu 2021) with TorchRL's TD3BCLoss, on the union with the imperfect reward."""
from __future__ import annotations

from ..baselines import TD3BCUpdate, make_qvalue_network
from ..modules import make_actor
from .base import Algorithm, AlgorithmError, Learner, check_positive, register

__all__ = ["TD3BC"]


@register
class TD3BC(Algorithm):
    """Trusts the reward it is given. ``compile: auto`` leaves it eager: its compiled step measured slower
    than eager here (``benchmarks/update_throughput.py``)."""

    name = "td3bc"
    actor = "deterministic"
    compile_by_default = False

    def validate(self, algo) -> None:
        super().validate(algo)
        check_positive(algo, "value_lr", "td3_alpha", "tau", "policy_delay")
        if not 0 < algo.gamma < 1:
            raise AlgorithmError(f"algo.gamma must lie in (0, 1), got {algo.gamma}.")

    def build(self, cfg, data, device) -> Learner:
        a, hidden = cfg.algo, tuple(cfg.algo.hidden)
        actor = make_actor(data.obs_dim, data.action_dim, stochastic=False, hidden=hidden, device=device)
        qvalue = make_qvalue_network(data.obs_dim, data.action_dim, hidden, device=device)
        update = TD3BCUpdate(actor, qvalue, alpha=a.td3_alpha, policy_noise=a.policy_noise, noise_clip=a.noise_clip,
                             policy_delay=a.policy_delay, gamma=a.gamma, tau=a.tau, actor_lr=a.actor_lr,
                             critic_lr=a.value_lr, total_steps=cfg.budget.updates, compile=self.compile(cfg),
                             compile_mode=cfg.compile_mode)
        return Learner(actor=actor, update=update, networks={"actor": actor})
