"""Behaviour cloning on the expert's transitions alone: what a user's one demonstration gives by itself."""
from __future__ import annotations

import torch
from tensordict import TensorDictBase

from ..config import ConfigError
from .base import register
from .bc import BC

__all__ = ["BCExpert"]


def _real(td: TensorDictBase) -> torch.Tensor:
    """Rows that are not absorbing self-loops (the policy never acts in the absorbing state)."""
    if "absorbing" not in td.keys():
        return torch.ones(td.shape[0], dtype=torch.bool)
    return ~td.get("absorbing").reshape(-1).bool()


@register
class BCExpert(BC):
    """BC on ``D^E`` only, with the same actor and update as ``bc`` (and as RGM's extraction): the bar any method
    holding the same trajectory must clear. It reads neither the reward nor ``D^O``."""

    name = "bc_expert"

    def training_set(self, cfg, data, union: TensorDictBase, learner=None) -> TensorDictBase:
        """The union's expert rows (``is_expert``), or ``D^E`` itself where the union leaves the expert out
        (``dataset.add_expert_to_union=false``, the authors' protocol); absorbing self-loops dropped."""
        flags = union.get("is_expert").reshape(-1).bool() if "is_expert" in union.keys() else None
        expert = union[flags & _real(union)] if flags is not None and flags.any() else None
        if expert is None:
            expert = data.expert.to_tensordict()
            expert = expert[_real(expert)]
        if cfg.algo.batch_size > expert.shape[0]:
            raise ConfigError(f"algo.batch_size={cfg.algo.batch_size} is larger than the expert set ({expert.shape[0]} "
                              f"transitions of {data.expert_id}); use algo.batch_size<={expert.shape[0]} or more "
                              "expert trajectories (dataset.n_expert_trajectories).")
        return expert

    def extraction_weights(self, cfg, learner, union, initial_observation, device):
        """1 on the union's expert rows, 0 elsewhere (all 0 where the union holds no expert rows)."""
        if "is_expert" not in union.keys():
            return torch.zeros(union.shape[0])
        return (union.get("is_expert").reshape(-1).bool() & _real(union)).float()
