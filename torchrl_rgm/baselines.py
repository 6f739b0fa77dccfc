"""Baselines in the same harness as RGM: IQL, TD3+BC and discriminator-weighted BC.

Each is an update step with the interface of :class:`~torchrl_rgm.train.RGMUpdate`
(``update(batch) -> detached metrics``, ``state_dict``/``load_state_dict`` for exact resume),
so the recipe trains it on the same buffers, budget and evaluation. IQL and TD3+BC are TorchRL's
own losses (:class:`~torchrl.objectives.IQLLoss`, :class:`~torchrl.objectives.TD3BCLoss`) with
:class:`~torchrl.objectives.SoftUpdate` target networks; only the optimiser schedule is ours.
Plain BC on the union is :class:`~torchrl_rgm.train.BCUpdate`; the SMODICE-style baseline is
:class:`~torchrl_rgm.train.RGMUpdate` without correction on the discriminator's log-ratio reward.
"""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torchrl.objectives import BCLoss, IQLLoss, SoftUpdate, TD3BCLoss, ValueEstimators

from .modules import _mlp
from .train import _OptimizerStep, _constant, _cosine

__all__ = ["IQLUpdate", "TD3BCUpdate", "WeightedBCUpdate", "make_qvalue_network"]

_TD_KEYS = ("observation", "action", ("next", "observation"), ("next", "reward"), ("next", "done"))


def make_qvalue_network(obs_dim: int, action_dim: int, hidden=(256, 256), device=None) -> TensorDictModule:
    """``Q(s, a)``: ``(observation, action) -> state_action_value``."""
    return TensorDictModule(_mlp(obs_dim + action_dim, 1, tuple(hidden), device), ["observation", "action"],
                            ["state_action_value"])


def _td_batch(batch: TensorDictBase) -> TensorDictBase:
    """The transition keys TorchRL's value estimators read; ``done`` in our buffers means terminated."""
    td = batch.select(*_TD_KEYS)
    td.set(("next", "terminated"), td.get(("next", "done")))
    return td


class _TargetNetworks:
    """Polyak-averaged target networks of a TorchRL loss, saved with the update's state."""

    loss: torch.nn.Module

    def _make_target_updater(self, tau: float):
        self.target_updater = SoftUpdate(self.loss, tau=tau)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "loss": self.loss.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.loss.load_state_dict(state["loss"])


class IQLUpdate(_TargetNetworks, _OptimizerStep):
    """Implicit Q-Learning (Kostrikov et al. 2022) with TorchRL's :class:`~torchrl.objectives.IQLLoss`.

    One Adam step on ``loss_actor + loss_qvalue + loss_value`` (TorchRL's IQL losses are
    gradient-isolated: each reaches only its own network), then a Polyak update of the target
    Q-networks. The actor's learning rate is cosine-annealed, as in the paper's MuJoCo setup.

    Args:
        actor: a probabilistic actor (IQL extracts the policy by advantage-weighted log-likelihood).
        qvalue: ``Q(s, a)``; TorchRL makes ``num_qvalue_nets`` independent copies of it.
        value: ``V(s)``.

    Keyword Args:
        expectile: τ of the expectile regression of ``V`` (paper, MuJoCo: 0.7).
        temperature: β of the advantage weights ``exp(β A)`` (paper, MuJoCo: 3.0; TorchRL caps them at 100).
        gamma, tau: discount and target-network rate (paper: 0.99, 0.005).
        lr: Adam learning rate of ``Q`` and ``V`` (paper: 3e-4).
        actor_lr: Adam learning rate of the actor, cosine-annealed; ``None`` = ``lr``.
    """

    def __init__(self, actor, qvalue, value, *, expectile: float = 0.7, temperature: float = 3.0,
                 gamma: float = 0.99, tau: float = 0.005, lr: float = 3e-4, actor_lr: float | None = None,
                 total_steps: int = 1_000_000, compile: bool = False, compile_mode: str | None = None):
        self.loss = IQLLoss(actor, qvalue, value, num_qvalue_nets=2, loss_function="l2",
                            temperature=temperature, expectile=expectile)
        self.loss.make_value_estimator(ValueEstimators.TD0, gamma=gamma)
        groups = [(self.loss.actor_network_params, lr if actor_lr is None else actor_lr, True),
                  (self.loss.qvalue_network_params, lr, False), (self.loss.value_network_params, lr, False)]
        self.optimizer = torch.optim.Adam([{"params": list(p.values(True, True)), "lr": g_lr} for p, g_lr, _ in groups])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, [_cosine(total_steps) if anneal else _constant for *_, anneal in groups])
        self._make_target_updater(tau)
        self._losses = torch.compile(self._compute, mode=compile_mode, dynamic=False) if compile else self._compute

    def _compute(self, batch):
        out = self.loss(_td_batch(batch))
        total = out["loss_actor"] + out["loss_qvalue"] + out["loss_value"]
        return total, out.select("loss_actor", "loss_qvalue", "loss_value", "entropy")

    def __call__(self, batch: TensorDictBase) -> TensorDictBase:
        metrics = super().__call__(batch)
        self.target_updater.step()
        return metrics


class TD3BCUpdate(_TargetNetworks, _OptimizerStep):
    """TD3+BC (Fujimoto & Gu 2021) with TorchRL's :class:`~torchrl.objectives.TD3BCLoss`.

    The critics step every update; the actor and the target networks every ``policy_delay``
    updates, as in the paper. Both losses are computed every step (one compiled graph) and the
    actor's gradient is dropped on the steps in between.

    Keyword Args:
        alpha: weight of the Q term, ``λ = α / mean|Q|`` (paper: 2.5).
        policy_noise, noise_clip: target policy smoothing (paper: 0.2, 0.5).
        policy_delay: critic updates per actor update (paper: 2).
        gamma, tau, actor_lr, critic_lr: paper: 0.99, 0.005, 3e-4, 3e-4.
    """

    def __init__(self, actor, qvalue, *, alpha: float = 2.5, policy_noise: float = 0.2, noise_clip: float = 0.5,
                 policy_delay: int = 2, gamma: float = 0.99, tau: float = 0.005, actor_lr: float = 3e-4,
                 critic_lr: float = 3e-4, total_steps: int = 1_000_000, compile: bool = False,
                 compile_mode: str | None = None):
        if policy_delay < 1:
            raise ValueError(f"policy_delay must be ≥ 1, got {policy_delay}.")
        self.loss = TD3BCLoss(actor, qvalue, action_spec=actor.spec, num_qvalue_nets=2, alpha=alpha,
                              policy_noise=policy_noise, noise_clip=noise_clip, loss_function="l2")
        self.loss.make_value_estimator(ValueEstimators.TD0, gamma=gamma)
        self.policy_delay = policy_delay
        self.step_count = 0
        self.optimizer = torch.optim.Adam(list(self.loss.qvalue_network_params.values(True, True)), lr=critic_lr)
        self.actor_optimizer = torch.optim.Adam(list(self.loss.actor_network_params.values(True, True)), lr=actor_lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _constant)
        self._make_target_updater(tau)
        self._losses = torch.compile(self._compute, mode=compile_mode, dynamic=False) if compile else self._compute

    def _compute(self, batch):
        out = self.loss(_td_batch(batch))
        return out["loss_actor"] + out["loss_qvalue"], out.select("loss_actor", "loss_qvalue", "bc_loss", "lmbd")

    def __call__(self, batch: TensorDictBase) -> TensorDictBase:
        total, metrics = self._losses(batch)
        total.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_count += 1
        if self.step_count % self.policy_delay == 0:
            self.actor_optimizer.step()
            self.target_updater.step()
        self.actor_optimizer.zero_grad(set_to_none=True)
        return metrics.detach()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "actor_optimizer": self.actor_optimizer.state_dict(),
                "step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.step_count = state["step_count"]


class WeightedBCUpdate(_OptimizerStep):
    """Discriminator-weighted behaviour cloning on the union (ORIL/DWBC-style).

    ``L = E_D[ w(s, a) · ℓ(π, s, a) ]`` with ``w = min(d^E/d^D, weight_clip)`` from the frozen
    discriminator's ``log_density_ratio`` (stored in the batch), divided by its batch mean;
    ``ℓ`` is TorchRL's :class:`~torchrl.objectives.BCLoss` per transition (squared error for a
    deterministic actor, negative log-likelihood for a stochastic one). This is the policy
    extraction of RGM with the discriminator's ratio in place of the learned visitation ratio:
    no value function, no reward.
    """

    def __init__(self, actor, *, weight_clip: float = 100.0, lr: float = 3e-4, total_steps: int = 1_000_000,
                 compile: bool = False, compile_mode: str | None = None, stochastic: bool = False):
        if not weight_clip > 0:
            raise ValueError(f"weight_clip must be > 0, got {weight_clip}.")
        self.loss = BCLoss(actor, loss_function=None if stochastic else "l2", reduction="none")
        self.weight_clip = float(weight_clip)
        self.optimizer = torch.optim.Adam(actor.parameters(), lr=lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _cosine(total_steps))
        self._losses = torch.compile(self._compute, mode=compile_mode, dynamic=False) if compile else self._compute

    def _compute(self, batch):
        per = self.loss(batch.select("observation", "action"))["loss_bc"]
        per = per.reshape(batch.shape[0], -1).mean(-1)
        w = batch.get("log_density_ratio").reshape(-1).exp().clamp(max=self.weight_clip)
        w = w / w.mean()
        loss = (w * per).mean()
        return loss, TensorDict(loss_bc=loss, weight_max=w.max(), batch_size=[])
