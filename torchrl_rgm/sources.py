"""Where a recipe's data and evaluation come from, behind one small interface (:class:`DataSource`):

- :class:`MinariSource` (``domain: mujoco``): Minari locomotion datasets, local ``rgm`` ones built if missing;
- :class:`RobomimicSource` (``domain: robomimic``): robomimic hdf5 files, generated locally if missing;
- :class:`SharingSource` (``domain: datasharing``): other tasks' datasets shared with a target task.

Each checks its configuration fields, builds what is missing, loads an :class:`~torchrl_rgm.data.RGMData`
(the same pipeline for all: reward transform, union, standardisation, absorbing states) and runs a policy in
its task's environment. A new source is one subclass here and its entry in :data:`SOURCES`.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, ListConfig

from .algorithms import get_algorithm
from .config import ConfigError, choice, domain
from .data import REWARD_SETTINGS, RGMData, load_rgm_data
from .generation import robomimic_build
from .generation.behaviour import has_shipped_policies
from .generation.build import LEVELS, build_env, build_missing, is_local_namespace
from .generation.tasks import ENVS
from .data.pipeline import EXPERT_UNION_REWARDS
from .data.robomimic import RobomimicEnv
from .data.sharing import default_sources, load_sharing_data, missing_task_datasets
from .generation.tasks import TASKS
from .envs import evaluate

__all__ = ["DataSource", "MinariSource", "RobomimicSource", "SharingSource", "SOURCES", "make_source"]


class DataSource:
    """One domain's datasets and task environment, read from a recipe's configuration ``cfg``.

    ``success_rate``: returns are 0/1 successes (the history also records the success rate).
    """

    success_rate = False

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def validate(self) -> None:
        """Check the data fields (``env``, ``dataset``, ``reward``) before any work."""
        choice("dataset.expert_union_reward", self.cfg.dataset.get("expert_union_reward", "given"),
               EXPERT_UNION_REWARDS)
        choice("reward setting", self.cfg.reward.name, REWARD_SETTINGS)
        kwargs = dict(self.cfg.reward.get("kwargs") or {})
        accepted = set(inspect.signature(REWARD_SETTINGS[self.cfg.reward.name]).parameters)
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise ConfigError(f"reward.kwargs {unknown} are not options of the {self.cfg.reward.name!r} reward; it "
                              f"accepts {sorted(accepted) or 'none'}.")
        n = self.cfg.dataset.n_expert_trajectories
        if not isinstance(n, int) or isinstance(n, bool):
            raise ConfigError(f"dataset.n_expert_trajectories must be a whole number of trajectories, got {n!r}.")

    def load(self, reward: str | None = None) -> RGMData:
        """The union ``D`` (with ``is_expert``), ``D^E``, ``mu0`` and statistics, building missing local datasets
        first. ``reward`` replaces the configured reward setting (e.g. ``"true"`` for diagnostics)."""
        raise NotImplementedError

    def evaluate(self, policy, data: RGMData) -> np.ndarray:
        """Undiscounted returns of ``policy`` (raw observations → actions) over ``eval.episodes`` episodes."""
        e = self.cfg.eval
        return evaluate(policy, self.cfg.env.name, e.episodes, e.num_envs, e.seed)

    def describe(self, data: RGMData) -> str:
        """One line about the loaded data: datasets, transition counts, reward setting."""
        return (f"union {data.union_id}: {data.union.shape[0]} transitions ({int(data.union['is_expert'].sum())} "
                f"expert) · expert {data.expert_id}: {data.expert.shape[0]} transitions · mu0: "
                f"{data.initial_observation.shape[0]} · reward {data.info['reward']}")

    def _pipeline(self) -> dict:
        """The transformation every source applies, from ``data.*`` and the protocol's fields."""
        c = self.cfg
        return dict(add_expert_to_union=c.dataset.add_expert_to_union, reward_scaling=c.data.reward_scaling,
                    terminal_absorbing_loop=c.data.terminal_absorbing_loop,
                    terminal_done=bool(c.data.get("terminal_done", False)))

    def _reward(self, reward: str | None) -> dict:
        r = self.cfg.reward
        return dict(reward=reward or r.name, reward_kwargs=dict(r.kwargs) if reward is None else {},
                    expert_union_reward=self.cfg.dataset.get("expert_union_reward", "given"))


class MinariSource(DataSource):
    """Minari datasets ``<namespace>/<env>/<level>-v0``: the project's local ``rgm`` builds or the hub's."""

    def validate(self) -> None:
        super().validate()
        choice("env", self.cfg.env.name, ENVS)
        choice("dataset level", self.cfg.dataset.union, LEVELS)
        choice("expert dataset level", self.cfg.dataset.expert, LEVELS)

    def dataset_ids(self) -> tuple[str, str]:
        d, env = self.cfg.dataset, self.cfg.env.name
        return f"{d.namespace}/{env}/{d.union}-v0", f"{d.namespace}/{env}/{d.expert}-v0"

    def load(self, reward: str | None = None) -> RGMData:
        d = self.cfg.dataset
        union_id, expert_id = self.dataset_ids()
        if is_local_namespace(d.namespace) and d.build_if_missing:
            build_missing(self.cfg.env.name, [d.union, d.expert], scale=d.build_scale, namespace=d.namespace)
        return load_rgm_data(union_id, expert_id, n_expert_trajectories=d.n_expert_trajectories,
                             **self._reward(reward), **self._pipeline())


class RobomimicSource(DataSource):
    """robomimic hdf5 files (``dataset.union_path``/``expert_path``, else ``<root>/<task>/<ph|mg>``); success is
    a return of 1, so the normalised score is the success rate in %."""

    success_rate = True

    def validate(self) -> None:
        super().validate()
        c = self.cfg
        choice("robomimic task (env.name)", c.env.name, robomimic_build.TASKS)
        choice("union dataset", c.dataset.union, robomimic_build.DATASETS)
        choice("expert dataset", c.dataset.expert, robomimic_build.DATASETS)
        if not c.dataset.obs_keys:
            raise ConfigError("dataset.obs_keys is empty; list the low-dim observation keys to use, e.g. "
                              "[robot0_eef_pos, robot0_eef_quat, robot0_gripper_qpos, object].")
        if not c.env.horizon > 0:
            raise ConfigError(f"env.horizon must be > 0, got {c.env.horizon}.")

    def paths(self) -> tuple[Path, Path]:
        """The union and expert files."""
        d = self.cfg.dataset
        root = Path(d.root).expanduser() if d.root else None
        union = Path(d.union_path) if d.union_path else robomimic_build.dataset_path(self.cfg.env.name, d.union, root)
        expert = Path(d.expert_path) if d.expert_path else robomimic_build.dataset_path(self.cfg.env.name, d.expert, root)
        return union, expert

    def load(self, reward: str | None = None) -> RGMData:
        d = self.cfg.dataset
        union, expert = self.paths()
        missing = sorted({name for name, path, given in ((d.union, union, d.union_path), (d.expert, expert, d.expert_path))
                          if not path.exists() and not given})
        if missing and d.build_if_missing:
            print(f"generating {self.cfg.env.name} {missing} (once; python -m torchrl_rgm.generation.robomimic_build)")
            robomimic_build.build_task(self.cfg.env.name, root=Path(d.root).expanduser() if d.root else None,
                                       datasets=missing, ph_episodes=d.build_ph_episodes, mg_episodes=d.build_mg_episodes)
        return load_rgm_data(str(union), str(expert), n_expert_trajectories=d.n_expert_trajectories,
                             obs_keys=list(d.obs_keys), **self._reward(reward), **self._pipeline())

    def evaluate(self, policy, data: RGMData) -> np.ndarray:
        """robosuite made from the union file's env metadata; return 1 on success, else 0."""
        e, env_meta, obs_keys = self.cfg.eval, data.info["env_meta"], data.info["obs_keys"]
        return evaluate(policy, lambda: RobomimicEnv(env_meta, obs_keys, self.cfg.env.horizon), e.episodes,
                        e.num_envs, e.seed)


class SharingSource(DataSource):
    """A target task (``env.name``) learnt from other tasks' datasets, each labelled with its own task's reward
    (relabelled with the target's by an algorithm that ``relabels``), plus the target's expert trajectories.
    Evaluated under the target task's reward."""

    def validate(self) -> None:  # no reward setting: each source keeps its own task's reward
        d = self.cfg.dataset
        choice("target task (env.name)", self.cfg.env.name, TASKS)
        choice("expert dataset level", d.expert, LEVELS)
        choice("source level", d.source_level, LEVELS)
        if d.sources is not None and not isinstance(d.sources, (list, ListConfig)):
            raise ConfigError(f"dataset.sources must be a list of datasets or null, got {d.sources!r}.")

    def load(self, reward: str | None = None) -> RGMData:
        d, target = self.cfg.dataset, self.cfg.env.name
        sources = list(d.sources) if d.sources is not None else default_sources(target, d.source_level)
        unlabelled = list(d.unlabelled or [])
        expert = f"{target}/{d.expert}"
        if d.build_if_missing:
            wanted = missing_task_datasets(sources + unlabelled + [expert])
            for task, levels in wanted.items():  # before building anything: every missing dataset can be built
                if not has_shipped_policies(task):
                    raise ConfigError(
                        f"rgm/{task}/{levels} are not built and {task} has no shipped behaviour policies to build "
                        f"them from: train them (`python -m torchrl_rgm.generation.behaviour --env {task}`, then "
                        "`--export`), or choose other dataset.sources / dataset.unlabelled.")
            for task, levels in wanted.items():
                print(f"building rgm/{task}/{levels} (once; python -m torchrl_rgm.generation.build --tasks)")
                build_env(task, levels=levels, scale=d.build_scale)
        pipeline = self._pipeline()
        return load_sharing_data(target, sources, unlabelled, expert=expert, n_expert_trajectories=d.n_expert_trajectories,
                                 relabel=get_algorithm(self.cfg.algo.name).relabels, **pipeline)

    def describe(self, data: RGMData) -> str:
        counts = ", ".join(f"{n}: {c}" for n, c in zip(data.info["sources"], data.info["source_transitions"]))
        return (f"target {data.info['target_task']} · union {data.union.shape[0]} transitions ({counts}) · "
                f"reward: {data.info['reward']}")


#: The data source of each ``domain``.
SOURCES = {"mujoco": MinariSource, "robomimic": RobomimicSource, "datasharing": SharingSource}


def make_source(cfg: DictConfig) -> DataSource:
    """The :class:`DataSource` of ``cfg``'s domain."""
    choice("domain", domain(cfg), SOURCES)
    return SOURCES[domain(cfg)](cfg)
