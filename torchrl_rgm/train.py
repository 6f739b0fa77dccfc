"""Shared training machinery: the RGM update step (optimisers, schedules, compilation)."""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase

from .objectives import RewardCorrectionLoss, RGMLoss

__all__ = ["RGMUpdate"]


def _adam(params, lr: float, weight_decay: float = 0.0, device: torch.device | None = None):
    params = list(params)
    # The fused kernel is one launch for all parameters on CPU and CUDA alike.
    fused = bool(params) and (device is None or torch.device(device).type in ("cpu", "cuda"))
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)


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
        self.optimizers = {
            "value": _adam(rgm_loss.value_network.parameters(), value_lr, value_weight_decay, device),
            "actor": _adam(rgm_loss.actor_network.parameters(), actor_lr, 0.0, device),
        }
        if correction_loss is not None:
            self.optimizers["reward_correction"] = _adam(
                correction_loss.reward_correction_network.parameters(),
                correction_lr,
                correction_weight_decay,
                device,
            )
        if rgm_loss.learn_entropy_coef:
            self.optimizers["entropy_coef"] = _adam([rgm_loss.log_entropy_coef], entropy_lr, 0.0, device)
        self.schedulers = {
            name: torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizers[name], T_max=total_steps)
            for name in ("actor", "reward_correction")
            if name in self.optimizers
        }
        self._losses = self._compute_losses
        if compile:
            self._losses = torch.compile(self._compute_losses, mode=compile_mode, dynamic=False)

    def _compute_losses(self, batch: TensorDictBase) -> tuple[torch.Tensor, TensorDictBase]:
        metrics = self.rgm_loss(batch)
        if self.correction_loss is not None:
            metrics.update(self.correction_loss(batch))
        total = sum(v for k, v in metrics.items() if k.startswith("loss_"))
        return total, metrics

    def __call__(self, batch: TensorDictBase) -> TensorDictBase:
        """Update all networks on ``batch``; return the detached losses and diagnostics."""
        total, metrics = self._losses(batch)
        total.backward()
        for optimizer in self.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        for scheduler in self.schedulers.values():
            scheduler.step()
        return metrics.detach()

    def state_dict(self) -> dict:
        return {
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])

    @staticmethod
    def metrics_to_floats(metrics: TensorDict) -> dict[str, float]:
        """One host sync for all metrics (call it every N steps, not every step)."""
        keys = list(metrics.keys())
        values = torch.stack([metrics[k].float() for k in keys]).tolist()
        return dict(zip(keys, values))
