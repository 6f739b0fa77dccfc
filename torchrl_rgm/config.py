"""A recipe's configuration checked before any work: the domain, the run's name, every field that needs no data."""
from __future__ import annotations

import math

import torch
from omegaconf import DictConfig

from .data.pipeline import REWARD_SCALINGS

__all__ = ["ConfigError", "DOMAINS", "domain", "run_name", "choice", "check_run_fields"]

#: What a recipe learns from: Minari locomotion datasets, robomimic files, or other tasks' shared data.
DOMAINS = ("mujoco", "robomimic", "datasharing")


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
    choice("precision", cfg.precision, ["float32", "bfloat16"])
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
