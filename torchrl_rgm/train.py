"""Shared training machinery: the RGM update step (optimisers, schedules, compilation)."""
from __future__ import annotations

import math
import warnings

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import BCLoss

from .atomic import atomic_path

# tensordict 0.14.3 (tensordict/utils.py) reads torch._dynamo.config.inline_inbuilt_nn_modules whenever a compiled
# update traces, and torch 2.13 answers with a FutureWarning naming the reader's install path: noise in every
# compiled run's output and the docs' executed tutorials, about neither this library nor its user's code.
warnings.filterwarnings("ignore", message=r"torch\._dynamo\.config\.inline_inbuilt_nn_modules is deprecated",
                        category=FutureWarning)
from .objectives import RGMLoss

__all__ = ["RGMUpdate", "BCUpdate", "pretrain_discriminator", "log_density_ratio", "fit_ratio_temperature", "save_checkpoint", "load_checkpoint"]


class _cosine:
    """Cosine annealing factor from 1 to 0 over ``total_steps`` (picklable, unlike a lambda)."""

    def __init__(self, total_steps: int):
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))


def _constant(step: int) -> float:
    return 1.0


class _OptimizerStep:
    """One optimiser step on ``self._losses(batch)``: backward, step, zero, schedule; no host sync."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    def __call__(self, batch: TensorDictBase) -> TensorDictBase:
        """Update the networks on ``batch``; return the detached losses and diagnostics."""
        total, metrics = self._losses(self.prepare(batch))
        total.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return metrics.detach()

    def prepare(self, batch: TensorDictBase) -> TensorDictBase:
        """What the step adds to a sampled batch before its losses (RGM: the actor's noise)."""
        return batch

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def stretch_schedules(self, old_steps: int, new_steps: int) -> None:
        """A resumed run lengthened from ``old_steps`` to ``new_steps``: every cosine that ran over the old budget
        runs over the new one from here on (a schedule with its own horizon, e.g. Δr's 1e6, is left alone)."""
        for fn in self.scheduler.lr_lambdas:
            if isinstance(fn, _cosine) and fn.total_steps == old_steps:
                fn.total_steps = new_steps

    @staticmethod
    def metrics_to_floats(metrics: TensorDict) -> dict[str, float]:
        """One host sync for all metrics (call it every N steps, not every step)."""
        keys = list(metrics.keys())
        values = torch.stack([metrics[k].float() for k in keys]).tolist()
        return dict(zip(keys, values))


class RGMUpdate(_OptimizerStep):
    """One RGM update with the discriminator frozen: reward correction + value + actor.

    All losses are computed in one pass (:class:`~torchrl_rgm.objectives.rgm.RGMLoss` evaluates ``V``
    once on the stacked ``[s0; s; s']``), summed and back-propagated once: the losses are gradient-isolated
    (each ``loss_*`` reaches only its own network), so one backward gives every network exactly its
    own gradient, and each network's optimiser group has its own learning rate and schedule. No host
    synchronisation happens in a call; the returned metrics are detached tensors.

    Args:
        rgm_loss: both levels; without a reward-correction network, the lower level alone
            (e.g. SMODICE-style, zero reward).

    Keyword Args:
        value_lr, value_weight_decay: Adam for ``V``. Paper: 3e-4, 1e-4.
        actor_lr: Adam for the actor, cosine-annealed. Paper: 3e-4.
        correction_lr, correction_weight_decay: Adam for ``Δr``, cosine. Paper: 3e-7, 1e-4.
        entropy_lr: Adam for the entropy coefficient. Default 3e-4.
        total_steps: horizon of the cosine schedules. Paper: 1e6.
        correction_total_steps: horizon of ``Δr``'s cosine when it differs from ``total_steps`` (the
            authors' absolute schedule anneals 3e-7 over 1e6 updates whatever the run's length).
        compile: compile the loss computation with :func:`torch.compile`.
        compile_mode: passed to :func:`torch.compile` (``"reduce-overhead"`` uses CUDA graphs on GPU).
        autocast_dtype: ``None`` (full float32, the default) or ``torch.bfloat16`` to run the
            matrix products in bfloat16 under :func:`torch.autocast` (weights, optimiser
            state and the losses' reductions stay float32).
        noise_seed: seeds the generator that draws a tanh-Gaussian actor's noise (the batch's
            ``actor_noise``; its state is checkpointed with the optimiser's). ``None``: the loss draws it
            from torch's global RNG.
    """

    def __init__(
        self,
        rgm_loss: RGMLoss,
        *,
        value_lr: float = 3e-4,
        value_weight_decay: float = 1e-4,
        actor_lr: float = 3e-4,
        correction_lr: float = 3e-7,
        correction_weight_decay: float = 1e-4,
        entropy_lr: float = 3e-4,
        total_steps: int = 1_000_000,
        correction_total_steps: int | None = None,
        compile: bool = False,
        compile_mode: str | None = None,
        device: torch.device | str | None = None,
        autocast_dtype: torch.dtype | None = None,
        noise_seed: int | None = None,
    ):
        if total_steps < 1:
            raise ValueError(f"total_steps must be ≥ 1, got {total_steps}.")
        if correction_total_steps is not None and correction_total_steps < 1:
            raise ValueError(f"correction_total_steps must be ≥ 1 or None, got {correction_total_steps}.")
        self.rgm_loss = rgm_loss
        # One optimiser with a parameter group per network: a single fused Adam kernel per step.
        groups = [
            ("value", rgm_loss.value_network.parameters(), value_lr, value_weight_decay, False),
            ("actor", rgm_loss.actor_network.parameters(), actor_lr, 0.0, True),
        ]
        if rgm_loss.reward_correction_network is not None:
            groups.append(
                ("reward_correction", rgm_loss.reward_correction_network.parameters(),
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
        horizon = {"reward_correction": correction_total_steps or total_steps}
        cosine = [_cosine(horizon.get(name, total_steps)) if anneal else _constant for name, *_, anneal in groups]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine)
        self.device_type = torch.device(device).type if device is not None else "cpu"
        self.autocast_dtype = autocast_dtype
        self.noise_generator = None
        if noise_seed is not None and rgm_loss.stochastic and rgm_loss.use_entropy:
            self.noise_generator = torch.Generator(device=device or "cpu").manual_seed(int(noise_seed))
        self._losses = self._compute_losses
        if compile:
            self._losses = torch.compile(self._compute_losses, mode=compile_mode, dynamic=False)

    def prepare(self, batch: TensorDictBase) -> TensorDictBase:
        """The batch with the actor's noise drawn from this update's generator (when it has one)."""
        if self.noise_generator is not None:
            keys = self.rgm_loss.tensor_keys
            action = batch.get(keys.action)
            batch.set(keys.actor_noise, torch.randn(action.shape, generator=self.noise_generator,
                                                    device=action.device, dtype=action.dtype))
        return batch

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.noise_generator is not None:
            state["noise_rng"] = self.noise_generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.noise_generator is not None and "noise_rng" in state:
            self.noise_generator.set_state(state["noise_rng"])

    def _compute_losses(self, batch: TensorDictBase) -> tuple[torch.Tensor, TensorDictBase]:
        with torch.autocast(
            self.device_type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        ):
            metrics = self.rgm_loss(batch)
        total = sum(v for k, v in metrics.items() if k.startswith("loss_"))
        return total, metrics



# ----------------------------------------------------------------------------------------------
# Discriminator pre-training, sampling, checkpoints: the machinery the recipes share.
# ----------------------------------------------------------------------------------------------


def pretrain_discriminator(discriminator_loss, union, expert, *, steps: int, batch_size: int = 512,
                           lr: float = 1e-3, generator: torch.Generator | None = None,
                           device="cpu") -> list[float]:
    """Train ``c`` on expert vs union batches (all of its layers), then freeze it.

    Returns the loss every 100 steps. Reference: 1000 epochs over the expert set at lr 1e-3.
    """
    keys = list(discriminator_loss.discriminator_network.in_keys)
    union_in = union.select(*keys).to(device)
    expert_in = expert.select(*keys).to(device)
    optimizer = torch.optim.Adam(discriminator_loss.discriminator_network.parameters(), lr=lr)
    history = []
    for step in range(steps):
        iu = torch.randint(union_in.shape[0], (batch_size,), generator=generator).to(device)
        ie = torch.randint(expert_in.shape[0], (min(batch_size, expert_in.shape[0]),), generator=generator).to(device)
        out = discriminator_loss(TensorDict(expert=expert_in[ie], union=union_in[iu]))
        loss = out["loss_discriminator"] + out["loss_gradient_penalty"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            history.append(out["loss_discriminator"].item())
    discriminator_loss.discriminator_network.requires_grad_(False)
    return history


@torch.no_grad()
def log_density_ratio(discriminator_loss, td: TensorDictBase, chunk: int = 65536, device="cpu",
                      normalize: bool = False, temperature: float = 1.0) -> torch.Tensor:
    """``log d^E/d^D`` for every transition of ``td`` (the union ``D``), computed once with the frozen discriminator.

    With ``normalize`` the ratio is calibrated so that ``E_D[d^E/d^D] = 1``, as a density ratio
    must be: a discriminator trained with a gradient penalty is under-confident (on hopper
    medium-replay with one expert trajectory its raw ``E_D[rho]`` is about 0.35). ``temperature`` multiplies the
    logit first (:func:`fit_ratio_temperature` fits it).
    """
    keys = list(discriminator_loss.discriminator_network.in_keys)
    out = []
    for start in range(0, td.shape[0], chunk):
        part = td[start:start + chunk].select(*keys).to(device)
        out.append(discriminator_loss.log_density_ratio(part)["log_density_ratio"].cpu())
    log_ratio = torch.cat(out, 0) * temperature
    if normalize:
        log_ratio = log_ratio - (torch.logsumexp(log_ratio.double().flatten(), 0) - math.log(log_ratio.numel())).float()
    return log_ratio


def fit_ratio_temperature(union_logit: torch.Tensor, expert_logit: torch.Tensor, max_temperature: float = 100.0,
                          iterations: int = 100) -> float:
    r"""The temperature ``T`` that makes :math:`\rho_T = e^{T\ell} / \mathbb{E}_D[e^{T\ell}]` the maximum-likelihood
    density ratio ``d^E/d^D`` in the family spanned by the discriminator's logit ``ℓ`` (KLIEP, Sugiyama et al. 2008,
    with ``ℓ`` as its one basis function): ``T`` maximises :math:`\mathbb{E}_E[\log\rho_T]` subject to
    :math:`\mathbb{E}_D[\rho_T] = 1`, a concave problem whose optimum satisfies the moment condition
    :math:`\mathbb{E}_{\rho_T d^D}[\ell] = \mathbb{E}_E[\ell]` — the visitation ``ρ_T d^D`` puts as much weight
    on expert-like logits as the expert's own data have. A discriminator trained with a gradient penalty is
    under-confident (``T > 1``); an over-confident one gets ``T < 1``.

    ``union_logit``: ``ℓ`` on ``D``'s transitions; ``expert_logit``: on ``D^E``'s. Solved by bisection on ``log T``
    (the tilted mean grows with ``T``); ``max_temperature`` where the expert's mean logit lies at or beyond the union's
    largest (the likelihood then grows without bound), and a tiny one where it lies at or below the union's mean.
    """
    u = union_logit.reshape(-1).double()
    target = expert_logit.reshape(-1).double().mean()

    def tilted_mean(t: float) -> torch.Tensor:
        p = torch.softmax(t * u, 0)
        return (p * u).sum()

    lo, hi = math.log(1e-3), math.log(max_temperature)
    if tilted_mean(math.exp(hi)) <= target:
        return float(max_temperature)
    if tilted_mean(math.exp(lo)) >= target:
        return float(math.exp(lo))
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if tilted_mean(math.exp(mid)) < target else (lo, mid)
    return float(math.exp(0.5 * (lo + hi)))


def save_checkpoint(state: dict, path) -> None:
    """Atomic (:func:`~torchrl_rgm.atomic.atomic_path`): a crash never leaves a half-written checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, on the CPU (``torch.load`` with ``weights_only=True``)."""
    return torch.load(path, weights_only=True, map_location="cpu")


class BCUpdate(_OptimizerStep):
    """Behaviour cloning on the union with TorchRL's :class:`~torchrl.objectives.BCLoss`.

    The baseline that ignores rewards and experts alike; same interface as :class:`RGMUpdate`.
    """

    def __init__(self, actor, *, lr: float = 3e-4, total_steps: int = 1_000_000, compile: bool = False,
                 compile_mode: str | None = None, stochastic: bool = False):
        self.loss = BCLoss(actor, loss_function=None if stochastic else "l2")
        self.optimizer = torch.optim.Adam(actor.parameters(), lr=lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _cosine(total_steps))
        self._losses = torch.compile(self._compute, mode=compile_mode, dynamic=False) if compile else self._compute

    def _compute(self, batch):
        out = self.loss(batch.select("observation", "action"))
        return out["loss_bc"], out
