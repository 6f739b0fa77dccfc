"""Behaviour cloning on the union (TorchRL's BCLoss): ignores rewards and experts alike."""
from __future__ import annotations

import torch

from ..modules import make_actor
from ..train import BCUpdate
from .base import Algorithm, Learner, register

__all__ = ["BC"]


@register
class BC(Algorithm):
    """Plain behaviour cloning on the union: the baseline that ignores rewards and experts alike."""

    name = "bc"
    reads_reward = False

    def build(self, cfg, data, device) -> Learner:
        actor = make_actor(data.obs_dim, data.action_dim, stochastic=self.stochastic_actor(cfg),
                           hidden=tuple(cfg.algo.hidden), device=device)
        update = BCUpdate(actor, lr=cfg.algo.actor_lr, stochastic=self.stochastic_actor(cfg),
                          total_steps=cfg.budget.updates, compile=self.compile(cfg), compile_mode=cfg.compile_mode)
        return Learner(actor=actor, update=update, networks={"actor": actor})

    def extraction_weights(self, cfg, learner, union, initial_observation, device):
        return torch.ones(union.shape[0])
