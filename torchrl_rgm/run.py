"""A run's life outside the maths: its configuration checked, its directory claimed (or reopened to resume),
its checkpoints (atomic, ``weights_only``-loadable, exact resume) and its logger."""
from __future__ import annotations

import atexit
import contextlib
import copy
import datetime as dt
import math
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from torchrl.record.loggers import get_logger

from .algorithms import ALGORITHMS, AlgorithmError, Learner, get_algorithm
from .atomic import atomic_path
from .checks import CONFIG_GROUPS, check_data, check_group_overrides, check_override_keys
from .config import ConfigError, check_run_fields, domain
from .sources import make_source
from .sampling import UnionReplayBuffer
from .train import load_checkpoint, save_checkpoint

__all__ = ["CONFIG_NAME", "CHECKPOINT_NAME", "PREVIOUS_CHECKPOINT_NAME", "CLAIM_NAME", "RESUMABLE", "validate",
           "check_group_overrides", "check_override_keys", "group_configs", "prepare_run_dir", "claim_run_dir", "start_run", "apply_resume_overrides", "load_resumed_config",
           "save_config", "save_progress", "restore_progress", "trim_logs", "check_data", "discard_unstarted", "StopOnInterrupt", "make_logger",
           "log_metrics"]

#: The resolved configuration's file name in a run directory (what ``resume=`` reloads).
CONFIG_NAME = "config.yaml"
#: The training state's file name in a run directory (:func:`save_progress`).
CHECKPOINT_NAME = "checkpoint.pt"
#: The checkpoint before the last, kept beside it so that a damaged file never loses the run.
PREVIOUS_CHECKPOINT_NAME = "checkpoint.prev.pt"
#: The actor of the evaluation closest to the demonstration (``demonstration_action_error``), beside the checkpoint.
SELECTED_POLICY_NAME = "selected_policy.pt"
#: The file that marks a run directory as in use by one process (:func:`claim_run_dir`).
CLAIM_NAME = ".run-claim"
#: What a resumed run may change: its length (longer only: the cosine schedules stretch to the new budget), how
#: often it checkpoints, whether and how it is compiled, how many environments evaluate it (returns do not
#: depend on it).
RESUMABLE = ("budget.updates", "checkpoint_every", "compile", "compile_mode", "eval.num_envs")


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
    """``(run_dir, resuming)``: the ``resume=`` directory, or a new one, claimed for this process alone.

    A new run goes to ``run_dir``, or by default to ``outputs/<env>-<what>-s<seed>-<timestamp>``. The claim
    (:func:`claim_run_dir`) is atomic: of two runs started on one directory at the same instant, one wins and the
    other gets a clear error. An existing directory with another run's outputs is refused, so no run overwrites
    another; one left by a run that died before its first checkpoint (only ``config.yaml`` and logs) is reused.
    ``resume=`` accepts any run directory: without a checkpoint it starts from the beginning with its saved
    configuration.
    """
    if cfg.resume:
        run_dir = Path(cfg.resume)
        if not (run_dir / CONFIG_NAME).exists():
            raise ConfigError(f"resume={run_dir}: no {CONFIG_NAME} there, so it is not a run directory "
                              "(a run writes its configuration first). Pass the directory a run printed.")
        claim_run_dir(run_dir)
        return run_dir, True
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        what = cfg.algo.name if domain(cfg) == "datasharing" else f"{cfg.dataset.union}-{cfg.reward.name}"
        run_dir = Path("outputs") / f"{cfg.env.name}-{what}-s{cfg.seed}-{stamp}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"Cannot create the run directory {run_dir} ({err.strerror}); choose a writable run_dir.") from None
    contents = {p.name for p in run_dir.iterdir()} - {CLAIM_NAME}
    reusable = contents <= {CONFIG_NAME, "logs"}  # a run that died before its first checkpoint
    if contents and not reusable:
        raise ConfigError(
            f"Run directory {run_dir} exists and is not empty: pass resume={run_dir} to continue it, "
            "or another run_dir."
        )
    claim_run_dir(run_dir)
    if contents:  # only now, holding the claim: the dead run's configuration and logs give way to this run's
        (run_dir / CONFIG_NAME).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "logs", ignore_errors=True)
    return run_dir, False


def claim_run_dir(run_dir: Path) -> None:
    """Make this process the only run working in ``run_dir``: an exclusive-create ``.run-claim`` file holding
    ``<host> <pid>``, removed at exit. A claim whose process is gone (killed) is taken over; a live one is refused."""
    path, me = run_dir / CLAIM_NAME, f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = path.read_text().strip() if path.exists() else ""
            if owner == me:
                return
            if not _claim_is_stale(owner) or not _take_over(path, owner):
                raise ConfigError(
                    f"Run directory {run_dir} is in use by another run ({owner or 'starting'}): wait for it to finish, "
                    f"or choose another run_dir. If that run is gone for good, delete {path}.") from None
            continue
        except OSError as err:
            raise ConfigError(f"Cannot write in the run directory {run_dir} ({err.strerror}); choose a writable "
                              "run_dir.") from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        atexit.register(_release_claim, path, me)
        return
    raise ConfigError(f"Run directory {run_dir} is in use by another run; choose another run_dir.")


def _claim_is_stale(owner: str) -> bool:
    host, _, pid = owner.partition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's (or a half-written) claim: never assume it is dead
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _take_over(path: Path, owner: str) -> bool:
    """Move a stale claim aside atomically (one process wins); put it back if it changed meanwhile."""
    aside = path.with_name(f"{CLAIM_NAME}.{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True  # someone else removed it: try to claim
    if aside.read_text().strip() != owner:
        os.rename(aside, path)
        return False
    aside.unlink()
    return True


def _release_claim(path: Path, me: str) -> None:
    try:
        if path.read_text().strip() == me:
            path.unlink()
    except OSError:
        pass


def group_configs(cfg: DictConfig) -> list[DictConfig]:
    """``seeds=[s0, s1, ...]``: one configuration per seed (``seed=s``, ``seeds=null``), its ``run_dir`` and
    ``resume`` the given patterns with ``{seed}`` replaced; checked before any work."""
    validate(cfg)
    seeds = list(cfg.seeds)
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"seeds must be a list of distinct integers, e.g. seeds=[0,1,2]; got {seeds}.")
    algorithm = get_algorithm(cfg.algo.name)
    if not algorithm.vectorizable:
        vectorizable = sorted(n for n, a in ALGORITHMS.items() if a.vectorizable)
        raise ConfigError(f"seeds=[...] trains the runs with one vectorised update, which only {vectorizable} have; "
                          f"run algo={cfg.algo.name} once per seed (seed=...).")
    for key in ("run_dir", "resume"):
        if cfg.get(key) and "{seed}" not in str(cfg[key]):
            raise ConfigError(f"With seeds=[...], {key} must name each run's directory with {{seed}}, e.g. "
                              f"{key}='outputs/hopper-s{{seed}}' (quoted for Hydra); got {cfg[key]}.")
    configs = []
    for seed in seeds:
        c = copy.deepcopy(cfg)
        with open_dict(c):
            c.seed, c.seeds = seed, None
            for key in ("run_dir", "resume"):
                if cfg.get(key):
                    c[key] = str(cfg[key]).replace("{seed}", str(seed))
        configs.append(c)
    return configs


def start_run(cfg: DictConfig, save: bool = True) -> tuple[DictConfig, Path, bool, torch.device]:
    """Check everything that needs no data, claim (or reopen, with ``resume=``) the run directory,
    seed torch, flush subnormal floats to zero on CPU (:func:`torch.set_flush_denormal`, see the design notes'
    "Decisions") and save the configuration (``save=False``: the caller saves it with :func:`save_config` once
    its own checks pass, e.g. a group's); returns ``(cfg, run_dir, resuming, device)``.

    On ``resume=`` the saved configuration is used; a command-line override of :data:`RESUMABLE` (a longer
    budget, checkpointing, compilation, the number of evaluation environments) is applied, any other override
    that differs from the saved run is refused with the list of differences.
    """
    validate(cfg)
    run_dir, resuming = prepare_run_dir(cfg)
    if resuming:
        cfg = apply_resume_overrides(load_resumed_config(run_dir), cfg, _command_line_overrides())
    torch.manual_seed(cfg.seed)
    # Adam's second moments of barely-trained parameters (a zero-started Δr at 3e-7) decay into subnormal
    # floats, and CPU arithmetic on subnormals is ~100x slower: a hopper run fell from 94 to 15 updates/s by 50k
    # updates. Flushing them changes only values below 1.2e-38.
    torch.set_flush_denormal(True)
    if save:
        save_config(cfg, run_dir)
    return cfg, run_dir, resuming, torch.device(cfg.device)


def _command_line_overrides() -> list[str]:
    """The overrides of the running Hydra application (empty when the config was composed in Python)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def apply_resume_overrides(saved: DictConfig, asked: DictConfig, overrides: list[str]) -> DictConfig:
    """``saved`` with the overrides of :data:`RESUMABLE` applied from ``asked``; any other override whose value
    differs from the saved run's raises :class:`ConfigError` listing every difference."""
    refused = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in ("resume", "run_dir", "seeds") or "=" not in override:
            continue
        new, old = OmegaConf.select(asked, key, default=None), OmegaConf.select(saved, key, default=None)
        if new == old:
            continue
        if key in RESUMABLE:
            if key == "budget.updates" and new < old:
                refused.append(f"{key}: the run has {old}, a resume can lengthen it but not shorten it ({new})")
            else:
                OmegaConf.update(saved, key, new, force_add=True)
        else:
            refused.append(f"{key}: the run has {old!r}, the command line asks {new!r}")
    if refused:
        raise ConfigError(f"resume={saved.resume} continues the run as it was configured; these overrides would change "
                          "it: " + "; ".join(refused) + f". Only {', '.join(RESUMABLE)} can change on resume; "
                          "start a new run for the others.")
    return saved


def load_resumed_config(run_dir: Path) -> DictConfig:
    """The configuration saved in ``run_dir`` (:data:`CONFIG_NAME`), with ``resume`` set to ``run_dir``."""
    cfg = OmegaConf.load(run_dir / CONFIG_NAME)
    cfg.resume = str(run_dir)
    return cfg


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    """Write the resolved ``cfg`` (with ``run_dir`` set) atomically to the run directory's :data:`CONFIG_NAME`."""
    with atomic_path(run_dir / CONFIG_NAME) as tmp:
        OmegaConf.save(OmegaConf.merge(cfg, {"run_dir": str(run_dir)}), tmp, resolve=True)


def save_progress(path: Path, learner: Learner, buffer: UnionReplayBuffer, step: int, history: list,
                  budget: int | None = None) -> None:
    """Everything an exact resume needs: the learner (networks, losses, optimisers), the buffer's sampling and torch's
    random states, the step, the evaluation history and the budget the schedules run over. The previous
    checkpoint is kept as :data:`PREVIOUS_CHECKPOINT_NAME`, so a damaged file never loses the run."""
    path = Path(path)
    if path.exists():
        os.replace(path, path.with_name(PREVIOUS_CHECKPOINT_NAME))
    save_checkpoint({**learner.state_dict(), "sampler": buffer.sampling_state(), "torch_rng": torch.get_rng_state(),
                     "step": step, "history": history, "budget": budget}, path)


def restore_progress(path: Path, learner: Learner, budget: int | None = None) -> dict | None:
    """Load :func:`save_progress`'s checkpoint into ``learner`` (falling back to the previous one, named, when the
    last is damaged) and stretch its cosine schedules to ``budget`` if the run was lengthened; returns the
    checkpoint (sampler state, RNG, step, history) for the caller, or ``None`` when the run has no checkpoint yet
    (it then starts from the beginning)."""
    path = Path(path)
    candidates = [p for p in (path, path.with_name(PREVIOUS_CHECKPOINT_NAME)) if p.exists()]
    if not candidates:
        return None
    errors = []
    for candidate in candidates:
        try:
            state = load_checkpoint(candidate)
        except Exception as err:  # truncated or corrupted: say which file, try the previous one
            errors.append(f"{candidate} is unreadable ({type(err).__name__}: {str(err).splitlines()[0][:120]})")
            continue
        if errors:
            print(f"warning: {errors[0]}; resuming from {candidate} (update {state['step']}) instead.")
        learner.load_state_dict(state)
        if budget is not None and state.get("budget") not in (None, budget):
            learner.update.stretch_schedules(state["budget"], budget)
        return state
    raise ConfigError("; ".join(errors) + ". No checkpoint of this run can be read: start a new run.")


def discard_unstarted(run_dir: Path) -> None:
    """Remove what :func:`start_run` wrote in a new ``run_dir`` (its configuration, the claim) when the run stops at a
    data check, so no empty run is left behind; a directory holding anything else is left as it is."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or {p.name for p in run_dir.iterdir()} - {CONFIG_NAME, CLAIM_NAME}:
        return
    for name in (CONFIG_NAME, CLAIM_NAME):
        (run_dir / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        run_dir.rmdir()


def trim_logs(run_dir: Path, step: int) -> None:
    """Drop the CSV log rows written after ``step`` (evaluations made after the checkpoint a run resumes from,
    which the resumed run makes again)."""
    for path in (run_dir / "logs").rglob("scalars/*.csv"):
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not line.strip() or float(line.split(",", 1)[0]) <= step]
        if len(kept) != len(lines):
            with atomic_path(path) as tmp:
                tmp.write_text("".join(kept))


class StopOnInterrupt:
    """A context in which the first Ctrl-C (SIGINT) or SIGTERM (``kill``, a scheduler's pre-emption) only sets
    :attr:`requested`, so the loop stops between two updates (nothing interrupted half-way), saves and prints the
    resume command; a second signal stops at once. Outside the main thread it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{what}: stopping after this update ({what} again to stop now)", file=sys.stderr, flush=True)

    def __enter__(self):
        try:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not the main thread
            self._previous = {}
        return self

    def __exit__(self, *exc):
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        return False


def make_logger(cfg: DictConfig, run_dir: Path, resumed_at: int | None = None):
    """TorchRL's logger of ``logger.backend`` (csv, tensorboard or wandb), writing under ``run_dir/logs``.

    ``resumed_at``: the checkpoint's update a resumed run continues from. The evaluations logged after it are made
    again: CSV rows after it are dropped (:func:`trim_logs`) and TensorBoard is told to discard its events from the
    next step on (``SummaryWriter(purge_step=...)``), so a resumed run's curves hold each step once. A W&B run is a
    new run on resume (its history is not rewritten)."""
    kwargs = {}
    if cfg.logger.backend == "wandb":
        kwargs = {"project": cfg.logger.project, "offline": cfg.logger.offline,
                  "config": OmegaConf.to_container(cfg, resolve=True)}
    logger = get_logger(cfg.logger.backend, logger_name=str(run_dir / "logs"), experiment_name="rgm", **kwargs)
    if resumed_at is not None:
        trim_logs(run_dir, resumed_at)
        if cfg.logger.backend == "tensorboard":  # the same SummaryWriter, reopened with purge_step
            writer = logger.experiment
            writer.close()
            logger.experiment = type(writer)(log_dir=writer.log_dir, purge_step=resumed_at + 1)
    return logger


def log_metrics(logger, metrics: dict, step: int) -> None:
    """Log every finite scalar of ``metrics`` (except ``step``) at ``step``."""
    for key, value in metrics.items():
        if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
            logger.log_scalar(key, value, step=step)
