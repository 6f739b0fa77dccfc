"""What the recipes share: validation, run directories, data, networks, state, logging, report."""
from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from tqdm import tqdm

from .data import REWARD_SETTINGS, load_rgm_data
from .data.minari import EXPERT_UNION_REWARDS, REWARD_SCALINGS
from .data.build import LEVELS, build_env, build_missing, is_local_namespace
from .data.envs import ENVS
from .modules import make_actor, make_discriminator, make_reward_correction_network, make_value_network
from .objectives import DIVERGENCES, DiscriminatorLoss, RewardCorrectionLoss, RGMLoss
from .diagnostics import correction_rank_correlation, top_decile_weight_share
from .report import plot_learning_curve, plot_per_source, plot_reward_correction, write_json
from .objectives.rgm import reward_correction
from .baselines import IQLUpdate, TD3BCUpdate, WeightedBCUpdate, make_qvalue_network
from .train import (BCUpdate, RGMUpdate, TransitionSampler, load_checkpoint, log_density_ratio,
                    pretrain_discriminator as _pretrain, save_checkpoint)

__all__ = [
    "CONFIG_NAME", "ALGOS", "REWARD_AGNOSTIC", "USES_DISCRIMINATOR", "ACTORS",
    "ConfigError", "domain", "run_name", "validate", "prepare_run_dir", "start_run", "load_resumed_config",
    "save_config", "robomimic_paths", "load_data", "describe_data", "Networks", "stochastic_actor",
    "build_networks", "PAPER_CORRECTION_LR", "PAPER_UPDATES", "correction_lr", "correction_horizon", "build_update", "pretrain_discriminator", "collect_state", "load_state",
    "restore_networks",
    "make_logger", "log_metrics", "report", "format_summary", "train", "transition_diagnostics",
    "source_diagnostics", "run_diagnostics",
]

#: The resolved configuration's file name in a run directory (what ``resume=`` reloads).
CONFIG_NAME = "config.yaml"
#: The algorithms a recipe trains (``algo.name``).
ALGOS = ("rgm", "smodice", "dwbc", "bc", "iql", "td3bc")
#: The algorithms that ignore the dataset's reward (one run per environment and dataset suffices).
REWARD_AGNOSTIC = ("bc", "smodice", "dwbc")
#: The algorithms that pre-train the discriminator and use its log density ratio.
USES_DISCRIMINATOR = ("rgm", "smodice", "dwbc")
#: The actor an algorithm needs (``stochastic`` or ``deterministic``); the others follow ``algo.actor``.
ACTORS = {"iql": "stochastic", "td3bc": "deterministic"}


class ConfigError(ValueError):
    """An invalid configuration or run directory, reported before anything is built or trained."""


def _choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"Unknown {name} {value!r}; valid choices are {sorted(choices)}.")


def domain(cfg: DictConfig) -> str:
    """``mujoco`` (Minari locomotion datasets), ``robomimic`` (robosuite manipulation files) or
    ``datasharing`` (a target task learnt from other tasks' datasets, :mod:`torchrl_rgm.data.sharing`)."""
    return cfg.get("domain", "mujoco")


def run_name(cfg: DictConfig) -> str:
    """What the run is, in a few words (plot titles, default run directory)."""
    if domain(cfg) == "datasharing":
        return f"{cfg.env.name} from shared data, {cfg.algo.name}{' relabelled' if cfg.algo.get('relabel') else ''}"
    return f"{cfg.env.name} {cfg.dataset.union}, {cfg.reward.name} reward"


def validate(cfg: DictConfig) -> None:
    """Every check that needs no data, before anything is built or trained."""
    _choice("domain", domain(cfg), ["mujoco", "robomimic", "datasharing"])
    if cfg.algo.get("relabel") and domain(cfg) != "datasharing":
        raise ConfigError(f"algo={cfg.algo.name} with relabel=true relabels shared data with a target task's reward: "
                          "it belongs to recipes/rgm_datasharing.py.")
    if domain(cfg) == "datasharing":
        from .data.tasks import TASKS

        _choice("target task (env.name)", cfg.env.name, TASKS)
        _choice("expert dataset level", cfg.dataset.expert, LEVELS)
        _choice("source level", cfg.dataset.source_level, LEVELS)
        if cfg.dataset.sources is not None and not isinstance(cfg.dataset.sources, (list, ListConfig)):
            raise ConfigError(f"dataset.sources must be a list of datasets or null, got {cfg.dataset.sources!r}.")
    elif domain(cfg) == "robomimic":
        from .data.robomimic_build import DATASETS, TASKS

        _choice("robomimic task (env.name)", cfg.env.name, TASKS)
        _choice("union dataset", cfg.dataset.union, DATASETS)
        _choice("expert dataset", cfg.dataset.expert, DATASETS)
        if not cfg.dataset.obs_keys:
            raise ConfigError("dataset.obs_keys is empty; list the low-dim observation keys to use, e.g. "
                              "[robot0_eef_pos, robot0_eef_quat, robot0_gripper_qpos, object].")
        if not cfg.env.horizon > 0:
            raise ConfigError(f"env.horizon must be > 0, got {cfg.env.horizon}.")
    else:
        _choice("env", cfg.env.name, ENVS)
        _choice("dataset level", cfg.dataset.union, LEVELS)
        _choice("expert dataset level", cfg.dataset.expert, LEVELS)
    if domain(cfg) != "datasharing":  # there, each source keeps its own task's reward
        _choice("reward setting", cfg.reward.name, REWARD_SETTINGS)
    _choice("algorithm", cfg.algo.name, ALGOS)
    _choice("algo.actor", cfg.algo.actor, ["auto", "deterministic", "stochastic"])
    needed = ACTORS.get(cfg.algo.name)
    if needed and cfg.algo.actor not in ("auto", needed):
        raise ConfigError(f"algo={cfg.algo.name} needs a {needed} actor; got algo.actor={cfg.algo.actor}. "
                          f"Use algo.actor={needed} (or auto).")
    _choice("divergence", cfg.algo.divergence, DIVERGENCES)
    _choice("precision", cfg.precision, ["float32", "bfloat16"])
    _choice("data.reward_scaling", cfg.data.reward_scaling, REWARD_SCALINGS)
    _choice("dataset.expert_union_reward", cfg.dataset.get("expert_union_reward", "given"), EXPERT_UNION_REWARDS)
    _choice("algo.correction_lr_schedule", cfg.algo.get("correction_lr_schedule", "rescaled"), ["rescaled", "paper"])
    _choice("logger backend", cfg.logger.backend, ["csv", "tensorboard", "wandb"])
    positive = {
        "algo.alpha": cfg.algo.alpha, "algo.batch_size": cfg.algo.batch_size,
        "budget.updates": cfg.budget.updates, "eval.every": cfg.eval.every, "eval.episodes": cfg.eval.episodes,
        "eval.num_envs": cfg.eval.num_envs, "checkpoint_every": cfg.checkpoint_every,
        "dataset.n_expert_trajectories": cfg.dataset.n_expert_trajectories,
    }
    for name, value in positive.items():
        if value is None or not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"{name} must be > 0, got {value}.")
    if cfg.compile not in ("auto", True, False):
        raise ConfigError(f"Unknown compile {cfg.compile!r}; valid choices are ['auto', True, False].")
    for name in ("value_lr", "actor_lr", "discriminator_lr"):
        if not cfg.algo[name] > 0:
            raise ConfigError(f"algo.{name} must be > 0, got {cfg.algo[name]}.")
    if cfg.algo.correction_lr is not None and not cfg.algo.correction_lr > 0:
        raise ConfigError(f"algo.correction_lr must be > 0 or null, got {cfg.algo.correction_lr}.")
    if cfg.budget.discriminator_steps < 0:
        raise ConfigError(f"budget.discriminator_steps must be ≥ 0, got {cfg.budget.discriminator_steps}.")
    if cfg.algo.res_scale < 0:
        raise ConfigError(f"algo.res_scale must be ≥ 0, got {cfg.algo.res_scale}.")
    if not 0 < cfg.algo.gamma < 1:
        raise ConfigError(f"algo.gamma must lie in (0, 1), got {cfg.algo.gamma}.")
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={cfg.device} but CUDA is not available; use device=cpu.")


def prepare_run_dir(cfg: DictConfig) -> tuple[Path, bool]:
    """``(run_dir, resuming)``: the ``resume=`` directory (it must hold ``checkpoint.pt``), or a new one.

    A new run goes to ``run_dir``, or by default to ``outputs/<env>-<what>-s<seed>-<timestamp>``;
    an existing non-empty directory is refused, so no run overwrites another.
    """
    if cfg.resume:
        run_dir = Path(cfg.resume)
        if not (run_dir / "checkpoint.pt").exists():
            raise ConfigError(f"resume={run_dir}: no checkpoint.pt there to resume from.")
        return run_dir, True
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        what = (f"{cfg.algo.name}{'-relabel' if cfg.algo.get('relabel') else ''}" if domain(cfg) == "datasharing"
                else f"{cfg.dataset.union}-{cfg.reward.name}")
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
    path = run_dir / CONFIG_NAME
    tmp = path.with_suffix(".tmp")
    OmegaConf.save(OmegaConf.merge(cfg, {"run_dir": str(run_dir)}), tmp, resolve=True)
    tmp.replace(path)


def _protocol_data(cfg) -> dict:
    """The data choices of the authors' protocol (``protocol=paper``), absent fields at their defaults."""
    return {"expert_union_reward": cfg.dataset.get("expert_union_reward", "given"),
            "terminal_done": bool(cfg.data.get("terminal_done", False))}


def _dataset_ids(cfg):
    ns, env = cfg.dataset.namespace, cfg.env.name
    return f"{ns}/{env}/{cfg.dataset.union}-v0", f"{ns}/{env}/{cfg.dataset.expert}-v0"


def robomimic_paths(cfg: DictConfig) -> tuple[Path, Path]:
    """The union and expert files: ``dataset.union_path``/``expert_path``, else ``<root>/<task>/<ph|mg>``."""
    from .data.robomimic_build import dataset_path

    root = Path(cfg.dataset.root).expanduser() if cfg.dataset.root else None
    union = Path(cfg.dataset.union_path) if cfg.dataset.union_path else dataset_path(cfg.env.name, cfg.dataset.union, root)
    expert = (Path(cfg.dataset.expert_path) if cfg.dataset.expert_path
              else dataset_path(cfg.env.name, cfg.dataset.expert, root))
    return union, expert


def _load_robomimic(cfg: DictConfig, reward: str | None):
    union, expert = robomimic_paths(cfg)
    missing = sorted({name for name, path, given in ((cfg.dataset.union, union, cfg.dataset.union_path),
                                                     (cfg.dataset.expert, expert, cfg.dataset.expert_path))
                      if not path.exists() and not given})
    if missing and cfg.dataset.build_if_missing:
        from .data.robomimic_build import build_task

        print(f"generating {cfg.env.name} {missing} (once; python -m torchrl_rgm.data.robomimic_build)")
        build_task(cfg.env.name, root=Path(cfg.dataset.root).expanduser() if cfg.dataset.root else None,
                   datasets=missing, ph_episodes=cfg.dataset.build_ph_episodes,
                   mg_episodes=cfg.dataset.build_mg_episodes)
    return load_rgm_data(
        str(union), str(expert), n_expert_trajectories=cfg.dataset.n_expert_trajectories,
        reward=reward or cfg.reward.name, reward_kwargs=dict(cfg.reward.kwargs) if reward is None else {},
        add_expert_to_union=cfg.dataset.add_expert_to_union, reward_scaling=cfg.data.reward_scaling,
        terminal_absorbing_loop=cfg.data.terminal_absorbing_loop, obs_keys=list(cfg.dataset.obs_keys),
        **_protocol_data(cfg),
    )


def _load_sharing(cfg: DictConfig):
    from .data.behaviour import has_shipped_policies
    from .data.sharing import default_sources, load_sharing_data, missing_task_datasets

    d, target = cfg.dataset, cfg.env.name
    sources = list(d.sources) if d.sources is not None else default_sources(target, d.source_level)
    unlabelled = list(d.unlabelled or [])
    expert = f"{target}/{d.expert}"
    if d.build_if_missing:
        wanted = missing_task_datasets(sources + unlabelled + [expert])
        for task, levels in wanted.items():  # before building anything: every missing dataset can be built
            if not has_shipped_policies(task):
                raise ConfigError(
                    f"rgm/{task}/{levels} are not built and {task} has no shipped behaviour policies to build "
                    f"them from: train them (`python -m torchrl_rgm.data.behaviour --env {task}`, then `--export`), "
                    "or choose other dataset.sources / dataset.unlabelled.")
        for task, levels in wanted.items():
            print(f"building rgm/{task}/{levels} (once; python -m torchrl_rgm.data.build --tasks)")
            build_env(task, levels=levels, scale=d.build_scale)
    return load_sharing_data(
        target, sources, unlabelled, expert=expert, n_expert_trajectories=d.n_expert_trajectories,
        relabel=bool(cfg.algo.get("relabel", False)), add_expert_to_union=d.add_expert_to_union,
        reward_scaling=cfg.data.reward_scaling, terminal_absorbing_loop=cfg.data.terminal_absorbing_loop,
        terminal_done=bool(cfg.data.get("terminal_done", False)))


def load_data(cfg: DictConfig, reward: str | None = None):
    """The :class:`~torchrl_rgm.data.minari.RGMData` of the configured domain, building missing datasets first.

    Local datasets (``rgm`` namespaces, robomimic files, task datasets) that do not exist yet are
    built when ``dataset.build_if_missing``. ``reward`` replaces the configured reward setting
    (and drops its keyword arguments); shared data ignores it.
    """
    if domain(cfg) == "robomimic":
        return _load_robomimic(cfg, reward)
    if domain(cfg) == "datasharing":
        return _load_sharing(cfg)
    union_id, expert_id = _dataset_ids(cfg)
    if is_local_namespace(cfg.dataset.namespace) and cfg.dataset.build_if_missing:
        build_missing(cfg.env.name, [cfg.dataset.union, cfg.dataset.expert], scale=cfg.dataset.build_scale,
                      namespace=cfg.dataset.namespace)
    return load_rgm_data(
        union_id, expert_id, n_expert_trajectories=cfg.dataset.n_expert_trajectories,
        reward=reward or cfg.reward.name, reward_kwargs=dict(cfg.reward.kwargs) if reward is None else {},
        add_expert_to_union=cfg.dataset.add_expert_to_union, reward_scaling=cfg.data.reward_scaling,
        terminal_absorbing_loop=cfg.data.terminal_absorbing_loop, **_protocol_data(cfg),
    )


def describe_data(data) -> str:
    """One line about the loaded data: datasets, transition counts, reward setting."""
    if "sources" in data.info:
        counts = ", ".join(f"{n}: {c}" for n, c in zip(data.info["sources"], data.info["source_transitions"]))
        return (f"target {data.info['target_task']} · union {data.union.shape[0]} transitions ({counts}) · "
                f"reward: {data.info['reward']}")
    return (f"union {data.union_id}: {data.union.shape[0]} transitions ({int(data.union['is_expert'].sum())} expert) · "
            f"expert {data.expert_id}: {data.expert.shape[0]} transitions · mu0: {data.initial_observation.shape[0]} · "
            f"reward {data.info['reward']}")


@dataclass
class Networks:
    """The networks of a run and the losses built on them.

    ``correction`` and ``correction_loss`` are ``None`` unless ``algo.name`` is ``rgm`` with
    ``algo.correction``; every algorithm gets a value network, an actor and a discriminator
    (:func:`build_networks`), used or not.
    """

    value: torch.nn.Module
    actor: torch.nn.Module
    correction: torch.nn.Module | None
    discriminator: torch.nn.Module
    rgm_loss: RGMLoss
    correction_loss: RewardCorrectionLoss | None
    discriminator_loss: DiscriminatorLoss


def stochastic_actor(cfg: DictConfig) -> bool:
    """The actor the algorithm trains: what it needs (IQL, TD3+BC), else ``algo.actor``, else the env's."""
    kind = ACTORS.get(cfg.algo.name, cfg.algo.actor)
    return bool(cfg.env.stochastic_actor) if kind == "auto" else kind == "stochastic"


def build_networks(cfg: DictConfig, data, device) -> Networks:
    """Make the value, actor, reward-correction and discriminator networks and their losses on ``device``."""
    a, hidden = cfg.algo, tuple(cfg.algo.hidden)
    obs_dim, act_dim = data.obs_dim, data.action_dim
    value = make_value_network(obs_dim, hidden, device=device)
    actor = make_actor(obs_dim, act_dim, stochastic=stochastic_actor(cfg), hidden=hidden, device=device)
    correction = (make_reward_correction_network(obs_dim, act_dim, hidden, device=device,
                                                 zero_init=bool(a.get("correction_zero_init", False)))
                  if a.correction and a.name == "rgm" else None)
    discriminator = make_discriminator(obs_dim, act_dim, state_only=a.state_only_discriminator, hidden=hidden, device=device)
    common = dict(divergence=a.divergence, alpha=a.alpha, gamma=a.gamma, res_scale=a.res_scale,
                  advantage_clip=a.advantage_clip)
    rgm_loss = RGMLoss(value, actor, correction, weight_clip=a.weight_clip, normalize_weights=a.normalize_weights,
                       action_dim=act_dim, **common)
    correction_loss = (RewardCorrectionLoss(correction, value, normalize_weights=a.correction_normalize_weights, **common)
                       if correction is not None else None)
    discriminator_loss = DiscriminatorLoss(discriminator, gradient_penalty=a.gradient_penalty)
    return Networks(value, actor, correction, discriminator, rgm_loss, correction_loss, discriminator_loss)


#: The authors' Δr schedule: Adam at 3e-7, cosine-annealed over 1e6 updates.
PAPER_CORRECTION_LR, PAPER_UPDATES = 3e-7, 1_000_000


def correction_lr(cfg: DictConfig) -> float:
    """Δr's learning rate: ``algo.correction_lr`` if set; else with ``algo.correction_lr_schedule``
    ``rescaled`` the paper's 3e-7 scaled so that a shorter budget moves Δr as far
    (``3e-7 * 1e6 / budget.updates``), with ``paper`` the paper's 3e-7 itself."""
    if cfg.algo.correction_lr is not None:
        return float(cfg.algo.correction_lr)
    if cfg.algo.get("correction_lr_schedule", "rescaled") == "paper":
        return PAPER_CORRECTION_LR
    return PAPER_CORRECTION_LR * PAPER_UPDATES / cfg.budget.updates


def correction_horizon(cfg: DictConfig) -> int:
    """The updates over which Δr's learning rate is cosine-annealed: the budget, or the paper's 1e6
    with ``algo.correction_lr_schedule=paper`` (a shorter run then ends early on the same schedule)."""
    return PAPER_UPDATES if cfg.algo.get("correction_lr_schedule", "rescaled") == "paper" else cfg.budget.updates


def build_update(cfg: DictConfig, nets: Networks, device, data):
    """The update step of ``cfg.algo.name``; all share the interface of :class:`~torchrl_rgm.train.RGMUpdate`.

    ``compile: auto`` compiles every algorithm except TD3+BC, whose compiled step measured slower
    than eager here (``benchmarks/update_throughput.py``).
    """
    a, name = cfg.algo, cfg.algo.name
    compile_on = cfg.compile is True or (cfg.compile == "auto" and name != "td3bc")
    common = dict(total_steps=cfg.budget.updates, compile=compile_on, compile_mode=cfg.compile_mode)
    if name == "bc":
        return BCUpdate(nets.actor, lr=a.actor_lr, stochastic=stochastic_actor(cfg), **common)
    if name == "dwbc":
        return WeightedBCUpdate(nets.actor, weight_clip=a.weight_clip, lr=a.actor_lr,
                                stochastic=stochastic_actor(cfg), **common)
    if name in ("iql", "td3bc"):
        qvalue = make_qvalue_network(data.obs_dim, data.action_dim, tuple(a.hidden), device=device)
        if name == "iql":
            return IQLUpdate(nets.actor, qvalue, nets.value, expectile=a.expectile, temperature=a.temperature,
                             gamma=a.gamma, tau=a.tau, lr=a.value_lr, actor_lr=a.actor_lr, **common)
        return TD3BCUpdate(nets.actor, qvalue, alpha=a.td3_alpha, policy_noise=a.policy_noise,
                           noise_clip=a.noise_clip, policy_delay=a.policy_delay, gamma=a.gamma, tau=a.tau,
                           actor_lr=a.actor_lr, critic_lr=a.value_lr, **common)
    return RGMUpdate(
        nets.rgm_loss, nets.correction_loss, value_lr=cfg.algo.value_lr, value_weight_decay=cfg.algo.value_weight_decay,
        actor_lr=cfg.algo.actor_lr, correction_lr=correction_lr(cfg),
        correction_weight_decay=cfg.algo.correction_weight_decay, total_steps=cfg.budget.updates,
        correction_total_steps=correction_horizon(cfg), compile=compile_on, compile_mode=cfg.compile_mode, device=device,
        autocast_dtype=torch.bfloat16 if cfg.precision == "bfloat16" else None,
    )


def pretrain_discriminator(cfg, nets: Networks, data, generator, device) -> list[float]:
    """Pre-train and freeze the discriminator (expert vs union) for the algorithms that use it.

    Returns :func:`torchrl_rgm.train.pretrain_discriminator`'s loss history, empty for the others.
    """
    if cfg.algo.name not in USES_DISCRIMINATOR:
        return []
    return _pretrain(nets.discriminator_loss, data.union, data.expert, steps=cfg.budget.discriminator_steps,
                     batch_size=cfg.algo.batch_size, lr=cfg.algo.discriminator_lr, generator=generator, device=device)


def collect_state(nets: Networks, update: RGMUpdate, sampler, step, history) -> dict:
    """What a resumed run needs: the states of the networks, loss, update (optimiser), sampler and RNG, step, history."""
    return {
        "networks": {k: getattr(nets, k).state_dict() for k in ("value", "actor", "correction", "discriminator")
                     if getattr(nets, k) is not None},
        "rgm_loss": nets.rgm_loss.state_dict(),
        "update": update.state_dict(),
        "sampler": sampler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "step": step,
        "history": history,
    }


def restore_networks(state: dict, nets: Networks) -> Networks:
    """Load the networks of a checkpoint (:func:`collect_state`'s, e.g. a finished run's ``checkpoint.pt``)
    into ``nets`` (from :func:`build_networks` with the run's configuration); the discriminator stays frozen."""
    for k, sd in state["networks"].items():
        getattr(nets, k).load_state_dict(sd)
    nets.discriminator.requires_grad_(False)
    return nets


def load_state(state: dict, nets: Networks, update: RGMUpdate) -> None:
    """Restore :func:`collect_state`'s networks, loss and update states; the discriminator stays frozen.

    The sampler, RNG, step and history are restored by the caller (:func:`train`).
    """
    restore_networks(state, nets)
    nets.rgm_loss.load_state_dict(state["rgm_loss"])
    update.load_state_dict(state["update"])


def make_logger(cfg: DictConfig, run_dir: Path):
    """TorchRL's logger of ``logger.backend`` (csv, tensorboard or wandb), writing under ``run_dir/logs``."""
    from torchrl.record.loggers import get_logger

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


def _dataset_score(data, td) -> float:
    """Mean normalised return of the episodes in ``td`` (true rewards, from the raw dataset; with shared
    data, the target task's)."""
    first = td.get("step") == 0
    if "absorbing" in td.keys():
        first = first & ~td.get("absorbing").squeeze(-1)
    key = "target_episode_return" if "target_episode_return" in td.keys() else "episode_return"
    returns = td[first].get(key).numpy()
    return float(np.mean(data.normalized_score(returns)))


def report(cfg, data, nets: Networks, history, elapsed, updates_per_s, run_dir: Path, device,
           per_source: dict | None = None, diagnostics: dict | None = None) -> dict:
    """summary.json (+ plots, final policy). ``updates_per_s`` excludes evaluation time; ``diagnostics``
    (:func:`run_diagnostics`) join the summary, NaN as null."""
    union_score = _dataset_score(data, data.union[~data.union["is_expert"].squeeze(-1)])
    expert_score = _dataset_score(data, data.expert)
    final = history[-1] if history else {}
    title = f"{run_name(cfg)}, {cfg.dataset.n_expert_trajectories} expert traj."
    plot_learning_curve(history, expert_score, union_score, run_dir / "learning_curve.png", title)
    corr = {}
    if nets.correction is not None:
        corr = _reward_correction_figure(cfg, data, nets, run_dir, title, device)
    save_checkpoint({"actor": nets.actor.state_dict(), "obs_mean": data.obs_mean, "obs_std": data.obs_std},
                    run_dir / "policy.pt")
    scores = [h["normalized_score"] for h in history]
    summary = {
        "final_normalized_score": final.get("normalized_score"),
        "final_normalized_score_std": final.get("normalized_score_std"),
        "best_normalized_score": float(max(scores)) if scores else None,
        "union_normalized_score": union_score,
        "expert_normalized_score": expert_score,
        "wall_time_s": elapsed,
        "updates_per_s": updates_per_s,
        "updates": final.get("step"),
        "run_dir": str(run_dir),
        **corr,
        **{k: (v if v is None or math.isfinite(v) else None) for k, v in (diagnostics or {}).items()},
    }
    if per_source:
        summary["per_source"] = per_source
        plot_per_source(per_source, run_dir / "sources.png", title)
    if domain(cfg) == "robomimic":  # the normalised score is the success rate in %; say it in its own words
        summary["final_success_rate"] = final.get("success_rate")
        summary["best_success_rate"] = max((h["success_rate"] for h in history), default=None)
    write_json(summary, run_dir / "summary.json")
    return summary


@torch.no_grad()
def _reward_correction_figure(cfg, data, nets: Networks, run_dir, title, device) -> dict:
    if ("next", "target_reward") in data.union.keys(True):  # shared data: the target task's reward
        true_reward = data.union["next", "target_reward"]
    else:
        true_reward = load_data(cfg, reward="true").union["next", "reward"]
    n = min(5000, data.union.shape[0])
    idx = torch.randperm(data.union.shape[0], generator=torch.Generator().manual_seed(0))[:n]
    batch = data.union[idx].to_tensordict().to(device)
    seen = batch["next", "reward"].squeeze(-1)
    delta = reward_correction(nets.correction, nets.correction.out_keys[0], batch, nets.rgm_loss.res_scale).squeeze(-1)
    true_r = true_reward[idx].squeeze(-1)
    real = ~batch["absorbing"].squeeze(-1).cpu() if "absorbing" in batch.keys() else torch.ones(n, dtype=torch.bool)
    return plot_reward_correction(true_r[real].numpy(), seen.cpu()[real].numpy(), (seen + delta).cpu()[real].numpy(),
                                  run_dir / "reward_correction.png", title)


def format_summary(s: dict) -> str:
    """:func:`report`'s summary as the lines a recipe prints at the end of a run."""
    def f(x, fmt=".1f"):
        return "n/a" if x is None else format(x, fmt)

    lines = [
        "",
        f"final normalised score  {f(s['final_normalized_score'])} ± {f(s['final_normalized_score_std'])}",
        f"best normalised score   {f(s['best_normalized_score'])}",
        *([f"final success rate      {f(s['final_success_rate'], '.2f')}"] if "final_success_rate" in s else []),
        f"union data's score      {f(s['union_normalized_score'])}",
        f"expert data's score     {f(s['expert_normalized_score'])}",
        f"wall time               {f(s['wall_time_s'], '.0f')} s   ({f(s['updates_per_s'])} updates/s)",
    ]
    if "spearman_corrected_vs_true" in s:
        lines.append(f"rank corr. with true r  seen {s['spearman_seen_vs_true']:.3f} → corrected {s['spearman_corrected_vs_true']:.3f}")
    lines.append(f"outputs                 {s['run_dir']}")
    return "\n".join(lines)


def train(cfg: DictConfig, data, run_dir: Path, resuming: bool, device,
          evaluate_returns: Callable[[Callable], np.ndarray]) -> dict:
    """Steps 3–6 of a recipe: networks, discriminator, the update loop with evaluations and checkpoints, report.

    ``evaluate_returns(policy)`` runs the policy (raw observations → actions) in the task's
    environment and returns the episodes' undiscounted returns; the normalised score is
    ``data.normalized_score`` of them (success rate in % where returns are 0/1).
    """
    from .envs import make_policy_fn

    nets = build_networks(cfg, data, device)
    update = build_update(cfg, nets, device, data)
    ckpt_path = run_dir / "checkpoint.pt"

    # Discriminator: pre-train, freeze, compute log d^E/d^D once per union transition.
    union = data.union.to_tensordict()
    if resuming:
        state = load_checkpoint(ckpt_path)
        load_state(state, nets, update)
    else:
        generator = torch.Generator().manual_seed(cfg.seed)
        pretrain_discriminator(cfg, nets, data, generator, device)
        state = None
    if cfg.algo.name in USES_DISCRIMINATOR:  # bc, iql, td3bc never read it
        union.set("log_density_ratio", log_density_ratio(nets.discriminator_loss, union, device=device,
                                                             normalize=cfg.algo.normalize_density_ratio))
    if cfg.algo.name == "smodice":  # SMODICE's reward is the discriminator's log-ratio, not the dataset's
        union.set(("next", "reward"), union.get("log_density_ratio").clone())
    sampler = TransitionSampler(union, data.initial_observation, cfg.algo.batch_size, seed=cfg.seed, device=device)

    # The bilevel loop: one compiled update per step, evaluation every N steps.
    logger = make_logger(cfg, run_dir)
    policy = make_policy_fn(nets.actor, lambda o: data.normalize_observation(o), device)
    step, history = 0, []
    if state is not None:
        sampler.load_state_dict(state["sampler"])
        step, history = state["step"], state["history"]
        torch.set_rng_state(state["torch_rng"])
    start, start_step, eval_time = time.time(), step, 0.0
    bar = tqdm(total=cfg.budget.updates, initial=step, desc=cfg.algo.name.upper(), mininterval=2)
    while step < cfg.budget.updates:
        metrics = update(sampler.sample())
        step += 1
        bar.update(1)
        if step % cfg.eval.every == 0 or step == cfg.budget.updates:
            t_eval = time.time()
            returns = evaluate_returns(policy)
            scores = data.normalized_score(returns)
            last = {"step": step, "return": float(returns.mean()), "normalized_score": float(scores.mean()),
                    "normalized_score_std": float(scores.std()), **update.metrics_to_floats(metrics)}
            if domain(cfg) == "robomimic":
                last["success_rate"] = float(np.mean(returns > 0))
            history.append(last)
            log_metrics(logger, last, step)
            bar.set_postfix(score=f"{last['normalized_score']:.1f}")
            eval_time += time.time() - t_eval
        if step % cfg.checkpoint_every == 0 or step == cfg.budget.updates:
            save_checkpoint(collect_state(nets, update, sampler, step, history), ckpt_path)
    bar.close()
    elapsed = time.time() - start

    # Report: summary.json, learning curve, reward correction, final policy.
    per_source = source_diagnostics(cfg, data, nets, union, device) if "source" in union.keys() else None
    return report(cfg, data, nets, history, elapsed, (step - start_step) / max(elapsed - eval_time, 1e-9), run_dir,
                  device, per_source, run_diagnostics(cfg, data, nets, union, device))


def run_diagnostics(cfg, data, nets: Networks, union, device) -> dict:
    """:mod:`torchrl_rgm.diagnostics` of a trained run: the share of the policy-extraction weight on ``D^O``'s
    top-decile episodes (rgm, smodice: the learnt ``w``; dwbc: the discriminator's clipped ratio; bc: uniform;
    iql and td3bc have no such weight) and, with a correction, Spearman(Δr, true reward) on ``D^O``.
    Empty for shared data (its sources have their own diagnostics)."""
    if domain(cfg) == "datasharing" or "episode_return" not in union.keys():
        return {}
    name, clip = cfg.algo.name, cfg.algo.get("weight_clip")
    weights = None
    if name in ("rgm", "smodice"):
        weights = transition_diagnostics(nets, union, data.initial_observation, device)["visitation_weight"]
    elif name == "dwbc":
        weights = union.get("log_density_ratio").exp()
    elif name == "bc":
        weights = torch.ones(union.shape[0])
    out = {}
    if weights is not None:
        out.update(top_decile_weight_share(union, weights.clamp(max=clip) if clip else weights))
    if nets.correction is not None:
        true_reward = load_data(cfg, reward="true").union.get(("next", "reward"))
        out["spearman_correction_vs_true"] = correction_rank_correlation(
            nets.correction, nets.correction.out_keys[0], union, true_reward, nets.rgm_loss.res_scale, device)
    return out


@torch.no_grad()
def transition_diagnostics(nets: Networks, union, initial_observation, device, chunk: int = 65536) -> dict:
    """Per transition of ``union``: the corrected reward ``r + Δr`` (learner's units; ``r`` without a
    correction network) and the visitation weight ``w = d^π/d^D`` of the trained lower level."""
    loss, keys = nets.rgm_loss, nets.rgm_loss.tensor_keys
    corrected, weight = [], []
    init = initial_observation.to(device)
    for start in range(0, union.shape[0], chunk):
        batch = union[start:start + chunk].to_tensordict().to(device)
        batch.set("initial_observation", init[torch.arange(batch.shape[0], device=device) % init.shape[0]])
        loss(batch)
        r = batch.get(keys.reward).reshape(-1, 1)
        delta = batch.get(keys.reward_correction) if nets.correction is not None else torch.zeros_like(r)
        corrected.append((r + delta).cpu())
        weight.append(batch.get(keys.visitation_weight).reshape(-1, 1).cpu())
    return {"corrected_reward": torch.cat(corrected), "visitation_weight": torch.cat(weight)}


def source_diagnostics(cfg, data, nets: Networks, union, device) -> dict:
    """Per source dataset: transitions, mean reward the learner saw and the target's true reward (per
    step, the data's units); for RGM the mean corrected reward; for RGM and SMODICE the mean
    visitation weight relative to the union's mean (> 1: the policy's visitation favours the source)."""
    from .data.sharing import TARGET_REWARD, per_source_means

    if cfg.algo.name == "smodice":  # its reward is the discriminator's log d^E/d^D (train() put it there)
        seen = union.get("log_density_ratio")
    else:
        seen = union.get(("next", "reward")) * data.reward_std + data.reward_mean
    values = {"reward_seen": seen, "target_reward": union.get(TARGET_REWARD)}
    if cfg.algo.name in ("rgm", "smodice"):
        diag = transition_diagnostics(nets, union, data.initial_observation, device)
        if cfg.algo.name == "rgm":
            values["corrected_reward"] = diag["corrected_reward"] * data.reward_std + data.reward_mean
        real = ~union.get("absorbing").reshape(-1) if "absorbing" in union.keys() else slice(None)
        w = diag["visitation_weight"].reshape(-1)
        values["visitation_weight"] = w / w[real].mean().clamp(min=1e-12)
    return per_source_means(union, values, data.info["sources"])
