"""Discriminator-weighted behaviour cloning on the union (ORIL/DWBC-style): weights ``min(d^E/d^D, weight_clip)``,
divided by their batch mean, from the same frozen discriminator as RGM. No value function, no reward."""
from __future__ import annotations

from ..baselines import WeightedBCUpdate
from ..modules import make_actor
from .base import Algorithm, Learner, check_positive, register

__all__ = ["DWBC"]


@register
class DWBC(Algorithm):
    """RGM's policy extraction with the discriminator's clipped ratio in place of the learnt visitation ratio."""

    name = "dwbc"
    reads_reward = False
    uses_discriminator = True

    def validate(self, algo) -> None:
        super().validate(algo)
        check_positive(algo, "weight_clip")

    def build(self, cfg, data, device) -> Learner:
        a = cfg.algo
        actor = make_actor(data.obs_dim, data.action_dim, stochastic=self.stochastic_actor(cfg),
                           hidden=tuple(a.hidden), device=device)
        discriminator_loss = self.make_discriminator_loss(cfg, data, device)
        update = WeightedBCUpdate(actor, weight_clip=a.weight_clip, lr=a.actor_lr, stochastic=self.stochastic_actor(cfg),
                                  total_steps=cfg.budget.updates, compile=self.compile(cfg),
                                  compile_mode=cfg.compile_mode)
        return Learner(actor=actor, update=update, networks={"actor": actor,
                                                             "discriminator": discriminator_loss.discriminator_network},
                       discriminator_loss=discriminator_loss)

    def extraction_weights(self, cfg, learner, union, initial_observation, device):
        return union.get("log_density_ratio").exp().clamp(max=cfg.algo.weight_clip)
