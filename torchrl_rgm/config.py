"""A recipe's configuration checked before any work: the domain, the run's name, every field that needs no data."""
from __future__ import annotations

import math
import platform

import torch
from omegaconf import DictConfig

from .data.pipeline import REWARD_SCALINGS

__all__ = ["ConfigError", "DOMAINS", "PRECISIONS", "domain", "run_name", "choice", "check_run_fields",
           "cpu_description", "cpu_has_native_bf16", "resolve_precision"]

#: What a recipe learns from: Minari locomotion datasets, robomimic files, or other tasks' shared data.
DOMAINS = ("mujoco", "robomimic", "datasharing")
#: ``precision``: float32, bfloat16 autocast for the update's matrix products, or auto (:func:`resolve_precision`).
PRECISIONS = ("float32", "bfloat16", "auto")


class ConfigError(ValueError):
    """An invalid configuration or run directory, reported before anything is built or trained."""


def choice(name, value, choices) -> None:
    """``value`` must be one of ``choices``; the error lists them."""
    if value not in choices:
        raise ConfigError(f"Unknown {name} {value!r}; valid choices are {sorted(choices)}.")


def domain(cfg: DictConfig) -> str:
    """``mujoco`` (Minari locomotion datasets), ``robomimic`` (robosuite manipulation files) or
    ``datasharing`` (a target task learnt from other tasks' datasets, :mod:`torchrl_rgm.data.sharing`)."""
    return cfg.get("domain", "mujoco")


def run_name(cfg: DictConfig) -> str:
    """What the run is, in a few words (plot titles)."""
    if domain(cfg) == "datasharing":
        return f"{cfg.env.name} from shared data, {cfg.algo.name}"
    return f"{cfg.env.name} {cfg.dataset.union}, {cfg.reward.name} reward"


def check_run_fields(cfg: DictConfig) -> None:
    """The fields every recipe has (budget, evaluation, device, ...); the data source and the algorithm check
    their own (:func:`torchrl_rgm.run.validate` calls all three)."""
    choice("domain", domain(cfg), DOMAINS)
    choice("precision", cfg.precision, PRECISIONS)
    choice("data.reward_scaling", cfg.data.reward_scaling, REWARD_SCALINGS)
    choice("logger backend", cfg.logger.backend, ["csv", "tensorboard", "wandb"])
    positive = {"budget.updates": cfg.budget.updates, "eval.every": cfg.eval.every, "eval.episodes": cfg.eval.episodes,
                "eval.num_envs": cfg.eval.num_envs, "checkpoint_every": cfg.checkpoint_every,
                "dataset.n_expert_trajectories": cfg.dataset.n_expert_trajectories}
    for name, value in positive.items():
        if value is None or not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"{name} must be > 0, got {value}.")
    if cfg.compile not in ("auto", True, False):
        raise ConfigError(f"Unknown compile {cfg.compile!r}; valid choices are ['auto', True, False].")
    if cfg.budget.discriminator_steps < 0:
        raise ConfigError(f"budget.discriminator_steps must be ≥ 0, got {cfg.budget.discriminator_steps}.")
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={cfg.device} but CUDA is not available; use device=cpu.")


def cpu_description() -> str:
    """The CPU a figure was measured on (``/proc/cpuinfo``'s model name) and torch's kernel capability there."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 products natively (AVX-512 BF16 or AMX-BF16 in ``/proc/cpuinfo``).

    Without them bfloat16 autocast is emulated and much slower than float32 (measured on an AVX2-only AMD EPYC:
    3 vs 66 updates/s), so ``precision=auto`` never picks it there. A CPU whose flags cannot be read counts as
    having none."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device) -> str:
    """``float32`` or ``bfloat16`` for ``precision`` on ``device``: ``auto`` is bfloat16 on a CPU with native
    bf16 (:func:`cpu_has_native_bf16`) and float32 elsewhere (on CUDA it has not been measured faster here)."""
    if precision != "auto":
        return precision
    return "bfloat16" if torch.device(device).type == "cpu" and cpu_has_native_bf16() else "float32"
