"""SMODICE-style offline imitation (Ma et al. 2022): RGM's lower level with the discriminator's
``log d^E/d^D`` as the reward and no correction. With KL and ``alpha = 1`` the objective
``E_{d^π}[log d^E/d^D] − KL(d^π || d^D)`` is ``−KL(d^π || d^E)``: imitation of the expert's visitation."""
from __future__ import annotations

from .base import register
from .rgm import RGM

__all__ = ["SMODICE"]


@register
class SMODICE(RGM):
    """Ignores the dataset's reward: the union's reward is replaced by the discriminator's log-ratio."""

    name = "smodice"
    reads_reward = False
    learns_correction = False

    def seen_reward(self, data, union):
        return union.get("log_density_ratio")

    def prepare_union(self, cfg, learner, union, device, expert=None):
        union = super().prepare_union(cfg, learner, union, device, expert=expert)
        union.set(("next", "reward"), union.get("log_density_ratio").clone())
        return union
