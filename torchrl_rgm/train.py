"""Shared training machinery: the RGM update step (optimisers, schedules, compilation)."""
from __future__ import annotations

import math

import torch
from tensordict import TensorDict, TensorDictBase

from .objectives import RewardCorrectionLoss, RGMLoss

__all__ = ["RGMUpdate"]


class _cosine:
    """Cosine annealing factor from 1 to 0 over ``total_steps`` (picklable, unlike a lambda)."""

    def __init__(self, total_steps: int):
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))


def _constant(step: int) -> float:
    return 1.0


class RGMUpdate:
    """One RGM update with the discriminator frozen: reward correction + value + actor.

    All losses are computed in one pass (:class:`RGMLoss` evaluates ``V`` once on
    the stacked ``[s0; s; s']``, :class:`RewardCorrectionLoss` reuses it), summed and
    back-propagated once: the losses are gradient-isolated (each ``loss_*``
    reaches only its own network), so one backward gives every network exactly its
    own gradient. No host synchronisation happens in :meth:`__call__`; the
    returned metrics are detached tensors.

    Args:
        rgm_loss: the lower level.
        correction_loss: the upper level, or ``None`` to train without correction
            (e.g. SMODICE-style, zero reward).

    Keyword Args:
        value_lr, value_weight_decay: Adam for ``V``. Paper: 3e-4, 1e-4.
        actor_lr: Adam for the actor, cosine-annealed. Paper: 3e-4.
        correction_lr, correction_weight_decay: Adam for ``Δr``, cosine. Paper: 3e-7, 1e-4.
        entropy_lr: Adam for the entropy coefficient. Default 3e-4.
        total_steps: horizon of the cosine schedules. Paper: 1e6.
        compile: compile the loss computation with :func:`torch.compile`.
        compile_mode: passed to :func:`torch.compile` (``"reduce-overhead"`` uses CUDA graphs on GPU).
        autocast_dtype: ``None`` (full float32, the default) or ``torch.bfloat16`` to run the
            matrix products in bfloat16 under :func:`torch.autocast` (weights, optimiser
            state and the losses' reductions stay float32).
    """

    def __init__(
        self,
        rgm_loss: RGMLoss,
        correction_loss: RewardCorrectionLoss | None = None,
        *,
        value_lr: float = 3e-4,
        value_weight_decay: float = 1e-4,
        actor_lr: float = 3e-4,
        correction_lr: float = 3e-7,
        correction_weight_decay: float = 1e-4,
        entropy_lr: float = 3e-4,
        total_steps: int = 1_000_000,
        compile: bool = False,
        compile_mode: str | None = None,
        device: torch.device | str | None = None,
        autocast_dtype: torch.dtype | None = None,
    ):
        if total_steps < 1:
            raise ValueError(f"total_steps must be ≥ 1, got {total_steps}.")
        if correction_loss is not None and (
            rgm_loss.reward_correction_network is not correction_loss.reward_correction_network
            or rgm_loss.value_network is not correction_loss.value_network
        ):
            raise ValueError(
                "RGMLoss and RewardCorrectionLoss must share the same value and reward-correction "
                "networks: build RGMLoss(value, actor, correction_net) and "
                "RewardCorrectionLoss(correction_net, value)."
            )
        self.rgm_loss = rgm_loss
        self.correction_loss = correction_loss
        # One optimiser with a parameter group per network: a single fused Adam kernel per step.
        groups = [
            ("value", rgm_loss.value_network.parameters(), value_lr, value_weight_decay, False),
            ("actor", rgm_loss.actor_network.parameters(), actor_lr, 0.0, True),
        ]
        if correction_loss is not None:
            groups.append(
                ("reward_correction", correction_loss.reward_correction_network.parameters(),
                 correction_lr, correction_weight_decay, True)
            )
        if rgm_loss.learn_entropy_coef:
            groups.append(("entropy_coef", [rgm_loss.log_entropy_coef], entropy_lr, 0.0, False))
        self.group_names = [g[0] for g in groups]
        param_groups = [
            {"params": list(params), "lr": lr, "weight_decay": wd, "name": name}
            for name, params, lr, wd, _ in groups
        ]
        fused = device is None or torch.device(device).type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(param_groups, fused=fused)
        cosine = [_cosine(total_steps) if anneal else _constant for *_, anneal in groups]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine)
        self.device_type = torch.device(device).type if device is not None else "cpu"
        self.autocast_dtype = autocast_dtype
        self._losses = self._compute_losses
        if compile:
            self._losses = torch.compile(self._compute_losses, mode=compile_mode, dynamic=False)

    def _compute_losses(self, batch: TensorDictBase) -> tuple[torch.Tensor, TensorDictBase]:
        with torch.autocast(
            self.device_type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        ):
            metrics = self.rgm_loss(batch)
            if self.correction_loss is not None:
                metrics.update(self.correction_loss(batch))
        total = sum(v for k, v in metrics.items() if k.startswith("loss_"))
        return total, metrics

    def __call__(self, batch: TensorDictBase) -> TensorDictBase:
        """Update all networks on ``batch``; return the detached losses and diagnostics."""
        total, metrics = self._losses(batch)
        total.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return metrics.detach()

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    @staticmethod
    def metrics_to_floats(metrics: TensorDict) -> dict[str, float]:
        """One host sync for all metrics (call it every N steps, not every step)."""
        keys = list(metrics.keys())
        values = torch.stack([metrics[k].float() for k in keys]).tolist()
        return dict(zip(keys, values))
