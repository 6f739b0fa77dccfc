"""Multi-task data sharing: learn a target task from other tasks' logs and a few expert trajectories.

The union ``D`` is made of

* **source datasets**, each labelled with the reward of the task it was collected for (what a
  team's logs hold: the ``other_task`` setting, several tasks at once);
* optionally **unlabelled** datasets (e.g. the target task's own logs with no reward), whose
  reward is 0 (as in UDS, Yu et al. 2022);
* ``n_expert_trajectories`` expert trajectories of the target task (default 1), labelled with
  the target's reward.

Every transition records where it came from (``source``, an index into ``data.info["sources"]``)
and the target task's true reward (``("next", "target_reward")``, and its episode's sum
``target_episode_return``, computed from its logged
infos by :mod:`torchrl_rgm.generation.tasks`: for diagnostics and the relabelled oracle, never seen by
a learner otherwise). ``relabel=True`` gives every transition the target's reward: the
"relabelled sharing" upper bound of Conservative Data Sharing (Yu et al. 2021), which needs the
reward function a real user does not have.

A dataset is named by its Minari id (``<namespace>/<task>/<level>-v0``) or, for those built
here, by ``<task>/<level>`` (``halfcheetah-jump/medium-replay`` → ``rgm/halfcheetah-jump/medium-replay-v0``).
The task of a source is the id's second-to-last component; an environment's own name
(``rgm/halfcheetah/medium-v0``) means its default task, ``run-forward``.
"""
from __future__ import annotations

import re

import minari
import torch
from tensordict import TensorDict

from .._keys import REWARD
from ..generation.tasks import TASKS, get_task, make_env, task_reward
from .minari import DatasetNotFoundError, find_dataset, load_transitions, raw_union_metadata
from .pipeline import RGMData, check_finite, finish_union, select_episodes

__all__ = ["SharingError", "default_sources", "load_sharing_data", "missing_task_datasets", "per_source_means",
           "resolve_dataset", "source_task", "TARGET_REWARD"]

#: Key of the target task's true reward per transition (diagnostics and ``relabel=True``; no learner sees it otherwise).
TARGET_REWARD = ("next", "target_reward")
_SHORT = re.compile(r"^[\w-]+/[\w-]+$")


class SharingError(ValueError):
    """A data-sharing configuration that cannot work (unknown task, mismatched spaces, no expert data)."""


def resolve_dataset(name: str) -> str:
    """``<task>/<level>`` → ``rgm/<task>/<level>-v0``; a full Minari id is returned unchanged."""
    return f"rgm/{name}-v0" if _SHORT.match(name) and not re.search(r"-v\d+$", name) else name


def source_task(dataset_id: str) -> str:
    """The task a dataset was collected for, from its id (``<ns>/<task>/<level>-vN``)."""
    parts = dataset_id.split("/")
    name = parts[-2] if len(parts) >= 2 else ""
    if name in TASKS:
        return name
    if f"{name}-run-forward" in TASKS:  # an environment's own datasets: its default reward
        return f"{name}-run-forward"
    raise SharingError(
        f"Cannot tell which task {dataset_id!r} was collected for: {name!r} is not a task. Known tasks: "
        f"{sorted(TASKS)}; name datasets <namespace>/<task>/<level>-v0 (or <task>/<level> for those built here)."
    )


def missing_task_datasets(names: list[str]) -> dict[str, list[str]]:
    """The ``rgm/<task>/<level>-v0`` datasets among ``names`` that are not local: ``{task: [levels]}``
    (what :func:`torchrl_rgm.generation.build.build_env` builds; other namespaces are never built here)."""
    local = set(minari.list_local_datasets())
    wanted: dict[str, set] = {}
    for name in names:
        ds_id = resolve_dataset(name)
        parts = ds_id.split("/")
        if ds_id not in local and parts[0] == "rgm" and len(parts) == 3:
            wanted.setdefault(parts[1], set()).add(parts[2].removesuffix("-v0"))
    return {task: sorted(levels) for task, levels in sorted(wanted.items())}


def default_sources(target: str, level: str = "medium") -> list[str]:
    """Every other task of the target's family at ``level``."""
    env = get_task(target).env
    return [f"{key}/{level}" for key, task in sorted(TASKS.items()) if task.env == env and key != target]


def _spaces(dataset_id: str, download: bool):
    ds = find_dataset(dataset_id, download)
    return tuple(ds.observation_space.shape), tuple(ds.action_space.shape)


def _target_reward(td: TensorDict, target: str, dataset_id: str) -> torch.Tensor:
    info = td.get(("next", "info"), None)
    if info is None:
        raise SharingError(f"{dataset_id} logs no per-step infos: the target's reward cannot be computed from it. "
                           "Rebuild it with `python -m torchrl_rgm.generation.build`.")
    try:
        return task_reward(target, {k: info.get(k) for k in info.keys()}).reshape(-1, 1).float()
    except KeyError as err:
        raise SharingError(f"{dataset_id}: {err.args[0]}") from None


def _set_target_reward(td: TensorDict, target: str, dataset_id: str) -> None:
    """``("next", "target_reward")`` per transition and ``target_episode_return`` (its episode's sum)."""
    reward = _target_reward(td, target, dataset_id)
    td.set(TARGET_REWARD, reward)
    episode = td.get("episode").reshape(-1)
    sums = torch.zeros(int(episode.max()) + 1, dtype=torch.float64).index_add_(0, episode, reward.reshape(-1).double())
    td.set("target_episode_return", sums[episode].float())


def load_sharing_data(
    target: str,
    sources: list[str] | None = None,
    unlabelled: list[str] = (),
    *,
    expert: str | None = None,
    n_expert_trajectories: int = 1,
    source_level: str = "medium",
    relabel: bool = False,
    add_expert_to_union: bool = True,
    standardize: bool = True,
    reward_scaling: str = "zscore",
    absorbing: bool = True,
    terminal_absorbing_loop: bool = True,
    download: bool = True,
    terminal_done: bool = False,
) -> RGMData:
    """Union, expert set, ``mu0`` and statistics for a target task from shared data (see the module doc).

    ``sources`` default to every other task of the target's family at ``source_level``;
    ``expert`` defaults to ``rgm/<target>/expert-v0`` (its first ``n_expert_trajectories``
    episodes). Scores normalise against the target task's random and expert returns (the expert
    dataset's ``ref_min_score``/``ref_max_score``). All checks (tasks, spaces, the expert data)
    run before any transition is read.
    """
    get_task(target)  # unknown target → ValueError naming the known tasks
    sources = list(default_sources(target, source_level) if sources is None else sources)
    unlabelled = list(unlabelled or [])
    if not sources and not unlabelled:
        raise SharingError("No source datasets: give at least one source or unlabelled dataset.")
    source_ids = [resolve_dataset(s) for s in sources]
    unlabelled_ids = [resolve_dataset(s) for s in unlabelled]
    expert_id = resolve_dataset(expert or f"{target}/expert")

    # Checks before any work: the expert data exists, every dataset has the target's spaces.
    env = make_env(target)
    want = (tuple(env.observation_space.shape), tuple(env.action_space.shape))
    env.close()
    try:
        expert_spaces = _spaces(expert_id, download)
    except DatasetNotFoundError as err:
        raise SharingError(
            f"The target task {target!r} has no expert data: {expert_id} is not available ({err}). Build it with "
            f"`python -m torchrl_rgm.generation.build --env {target} --levels expert`, or pass expert=<a dataset of "
            f"{target} demonstrations>."
        ) from None
    for ds_id, spaces in [(expert_id, expert_spaces)] + [(i, _spaces(i, download)) for i in source_ids + unlabelled_ids]:
        if spaces != want:
            raise SharingError(
                f"{ds_id} has observation/action shapes {spaces[0]}/{spaces[1]} but the target task {target} "
                f"({get_task(target).env}) has {want[0]}/{want[1]}: share data between tasks of the same "
                "environment only."
            )
    tasks = {i: source_task(i) for i in source_ids + unlabelled_ids}

    names, parts = [], []
    for k, ds_id in enumerate(source_ids + unlabelled_ids):
        raw = load_transitions(ds_id, download=download)
        check_finite(raw, ds_id)
        td = raw.clone()
        _set_target_reward(td, target, ds_id)
        labelled = k < len(source_ids)
        if not labelled:
            td.set(REWARD, torch.zeros_like(td.get(REWARD)))
        short = "/".join(ds_id.split("/")[-2:]).removesuffix("-v0")
        names.append(short if labelled else f"{short} (unlabelled)")
        td.set("source", torch.full((td.shape[0],), k, dtype=torch.int64))
        td.set("transition_id", td.get("transition_id") + ((k + 1) << 40))
        parts.append(td)
    raw_expert = load_transitions(expert_id, download=download)
    check_finite(raw_expert, expert_id)
    expert_td = select_episodes(raw_expert, n_expert_trajectories, expert_id).clone()
    _set_target_reward(expert_td, target, expert_id)
    expert_td.set("source", torch.full((expert_td.shape[0],), len(names), dtype=torch.int64))
    names.append(f"{target} expert ({n_expert_trajectories} traj.)")
    expert_td.set("is_expert", torch.ones(expert_td.shape[0], 1, dtype=torch.bool))
    for td in parts:
        td.set("is_expert", torch.zeros(td.shape[0], 1, dtype=torch.bool))
    if add_expert_to_union:
        parts.append(expert_td)
    keys = set.intersection(*(set(td.keys(True, True)) for td in parts + [expert_td]))
    keys = [k for k in keys if not (isinstance(k, tuple) and k[:2] == ("next", "info"))]
    union = torch.cat([td.select(*keys) for td in parts], 0)
    expert_td = expert_td.select(*keys)
    if relabel:
        for td in (union, expert_td):
            td.set(REWARD, td.get(TARGET_REWARD).clone())

    union, expert_td, initial, (obs_mean, obs_std, reward_mean, reward_std) = finish_union(
        union, expert_td, standardize=standardize, reward_scaling=reward_scaling, absorbing=absorbing,
        terminal_absorbing_loop=terminal_absorbing_loop, terminal_done=terminal_done)
    meta = raw_union_metadata(expert_id, download)
    counts = torch.bincount(union.get("source"), minlength=len(names)).tolist()
    return RGMData(
        union=union, expert=expert_td, initial_observation=initial.contiguous(), obs_mean=obs_mean, obs_std=obs_std,
        reward_mean=reward_mean, reward_std=reward_std, union_id=" + ".join(names[:-1]), expert_id=expert_id,
        env_spec=meta.get("env_id"), ref_min_score=meta.get("ref_min_score"), ref_max_score=meta.get("ref_max_score"),
        info={"reward": f"relabelled with {target}'s reward" if relabel else "each source's own task reward",
              "target_task": target, "sources": names, "source_tasks": [tasks[i] for i in source_ids + unlabelled_ids]
              + [target], "source_transitions": counts, "relabel": bool(relabel),
              "n_expert_trajectories": n_expert_trajectories, "expert_transitions": int(expert_td.shape[0]),
              "union_transitions": int(union.shape[0])},
    )


def per_source_means(union: TensorDict, values: dict[str, torch.Tensor], names: list[str]) -> dict:
    """Mean of each per-transition value over each source's real (non-absorbing) transitions."""
    source = union.get("source").reshape(-1)
    real = ~union.get("absorbing").reshape(-1) if "absorbing" in union.keys() else torch.ones_like(source, dtype=torch.bool)
    out = {}
    for k, name in enumerate(names):
        mask = (source == k) & real
        out[name] = {"transitions": int(mask.sum())}
        for key, v in values.items():
            out[name][key] = float(v.reshape(-1)[mask].float().mean()) if mask.any() else float("nan")
    return out
