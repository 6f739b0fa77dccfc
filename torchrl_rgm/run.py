"""A run's life outside the maths: its configuration checked, its directory claimed (or reopened to resume),
its checkpoints (atomic, ``weights_only``-loadable, exact resume) and its logger."""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.record.loggers import get_logger

from .algorithms import AlgorithmError, Learner, get_algorithm
from .atomic import atomic_path
from .config import ConfigError, check_run_fields, domain
from .sources import make_source
from .train import TransitionSampler, load_checkpoint, save_checkpoint

__all__ = ["CONFIG_NAME", "CHECKPOINT_NAME", "validate", "prepare_run_dir", "start_run", "load_resumed_config",
           "save_config", "save_progress", "restore_progress", "make_logger", "log_metrics"]

#: The resolved configuration's file name in a run directory (what ``resume=`` reloads).
CONFIG_NAME = "config.yaml"
#: The training state's file name in a run directory (:func:`save_progress`).
CHECKPOINT_NAME = "checkpoint.pt"


def validate(cfg: DictConfig) -> None:
    """Every check that needs no data, before anything is built or trained: the run's own fields, the data
    source's (:meth:`~torchrl_rgm.sources.DataSource.validate`) and the algorithm's (``algo.*``)."""
    check_run_fields(cfg)
    try:
        algorithm = get_algorithm(cfg.algo.name)
        algorithm.validate(cfg.algo)
    except AlgorithmError as exc:
        raise ConfigError(str(exc)) from None
    if algorithm.relabels and domain(cfg) != "datasharing":
        raise ConfigError(f"algo={cfg.algo.name} relabels shared data with a target task's reward: "
                          "it belongs to recipes/rgm_datasharing.py.")
    make_source(cfg).validate()


def prepare_run_dir(cfg: DictConfig) -> tuple[Path, bool]:
    """``(run_dir, resuming)``: the ``resume=`` directory (it must hold ``checkpoint.pt``), or a new one.

    A new run goes to ``run_dir``, or by default to ``outputs/<env>-<what>-s<seed>-<timestamp>``;
    an existing non-empty directory is refused, so no run overwrites another.
    """
    if cfg.resume:
        run_dir = Path(cfg.resume)
        if not (run_dir / CHECKPOINT_NAME).exists():
            raise ConfigError(f"resume={run_dir}: no {CHECKPOINT_NAME} there to resume from.")
        return run_dir, True
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        what = cfg.algo.name if domain(cfg) == "datasharing" else f"{cfg.dataset.union}-{cfg.reward.name}"
        run_dir = Path("outputs") / f"{cfg.env.name}-{what}-s{cfg.seed}-{stamp}"
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(
            f"Run directory {run_dir} exists and is not empty: pass resume={run_dir} to continue it, "
            "or another run_dir."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, False


def start_run(cfg: DictConfig) -> tuple[DictConfig, Path, bool, torch.device]:
    """Check everything that needs no data, claim (or reopen, with ``resume=``) the run directory,
    seed torch, flush subnormal floats to zero on CPU (:func:`torch.set_flush_denormal`, see the README's
    "Decisions") and save the configuration; returns ``(cfg, run_dir, resuming, device)``."""
    validate(cfg)
    run_dir, resuming = prepare_run_dir(cfg)
    cfg = load_resumed_config(run_dir) if resuming else cfg
    torch.manual_seed(cfg.seed)
    # Adam's second moments of barely-trained parameters (a zero-started Δr at 3e-7) decay into subnormal
    # floats, and CPU arithmetic on subnormals is ~100x slower: a hopper run fell from 94 to 15 updates/s by 50k
    # updates. Flushing them changes only values below 1.2e-38.
    torch.set_flush_denormal(True)
    save_config(cfg, run_dir)
    return cfg, run_dir, resuming, torch.device(cfg.device)


def load_resumed_config(run_dir: Path) -> DictConfig:
    """The configuration saved in ``run_dir`` (:data:`CONFIG_NAME`), with ``resume`` set to ``run_dir``."""
    cfg = OmegaConf.load(run_dir / CONFIG_NAME)
    cfg.resume = str(run_dir)
    return cfg


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    """Write the resolved ``cfg`` (with ``run_dir`` set) atomically to the run directory's :data:`CONFIG_NAME`."""
    with atomic_path(run_dir / CONFIG_NAME) as tmp:
        OmegaConf.save(OmegaConf.merge(cfg, {"run_dir": str(run_dir)}), tmp, resolve=True)


def save_progress(path: Path, learner: Learner, sampler: TransitionSampler, step: int, history: list) -> None:
    """Everything an exact resume needs: the learner (networks, losses, optimisers), the sampler's and torch's
    random states, the step and the evaluation history."""
    save_checkpoint({**learner.state_dict(), "sampler": sampler.state_dict(), "torch_rng": torch.get_rng_state(),
                     "step": step, "history": history}, path)


def restore_progress(path: Path, learner: Learner) -> dict:
    """Load :func:`save_progress`'s checkpoint into ``learner``; returns the checkpoint (sampler state, RNG,
    step, history) for the caller to restore once its sampler exists."""
    state = load_checkpoint(path)
    learner.load_state_dict(state)
    return state


def make_logger(cfg: DictConfig, run_dir: Path):
    """TorchRL's logger of ``logger.backend`` (csv, tensorboard or wandb), writing under ``run_dir/logs``."""
    kwargs = {}
    if cfg.logger.backend == "wandb":
        kwargs = {"project": cfg.logger.project, "offline": cfg.logger.offline,
                  "config": OmegaConf.to_container(cfg, resolve=True)}
    return get_logger(cfg.logger.backend, logger_name=str(run_dir / "logs"), experiment_name="rgm", **kwargs)


def log_metrics(logger, metrics: dict, step: int) -> None:
    """Log every finite scalar of ``metrics`` (except ``step``) at ``step``."""
    for key, value in metrics.items():
        if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
            logger.log_scalar(key, value, step=step)
