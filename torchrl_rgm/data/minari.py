"""Minari datasets (local or from the hub) → transition TensorDicts → RGM's buffers.

:func:`load_transitions` converts a dataset's episodes into one flat TensorDict of
transitions, memory-mapped in a cache and reused. :func:`load_rgm_data` turns a union id and
an expert id into what RGM trains on: the union ``D`` (with ``is_expert``), the expert set
``D^E``, the initial observations ``mu0`` and the z-scoring statistics, with the imperfect
reward applied before standardisation and absorbing states added.

We do not use ``torchrl.data.datasets.MinariExperienceReplay``: in torchrl 0.14.1 every
tensor it returns is zero (it calls ``memmap_like`` after filling its data).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

import minari
import numpy as np
import torch
from tensordict import TensorDict

from .._keys import OBS, REWARD
from . import robomimic as _robomimic
from .pipeline import (EXPERT_UNION_REWARDS, REWARD_SCALINGS, DatasetError, RGMData, check_finite, finish_union,
                       select_episodes)
from .rewards import make_reward_transform
from .transitions import append_episode, columns_to_tensordict, new_columns

__all__ = ["DatasetNotFoundError", "find_dataset", "load_rgm_data", "load_transitions", "cache_root", "datasets_root",
           "raw_union_metadata", "owned_temporary", "remove_stale_temporaries"]

CACHE_VERSION = 1
class DatasetNotFoundError(FileNotFoundError):
    """A Minari dataset is neither local nor downloadable from the hub."""


def cache_root() -> Path:
    """Where converted transitions are cached.

    ``$TORCHRL_RGM_CACHE/transitions``, or ``~/.cache/torchrl_rgm/transitions`` when the variable is unset.
    """
    return Path(os.environ.get("TORCHRL_RGM_CACHE", Path.home() / ".cache" / "torchrl_rgm")) / "transitions"


def datasets_root() -> Path:
    """Minari's local datasets directory (``MINARI_DATASETS_PATH``, or Minari's default)."""
    return Path(minari.storage.get_dataset_path())


def find_dataset(dataset_id: str, download: bool = True) -> minari.MinariDataset:
    """A local Minari dataset, or one downloaded from the hub when there is network."""
    local = sorted(minari.list_local_datasets())
    if dataset_id in local:
        return minari.load_dataset(dataset_id)
    reason = "download disabled"
    if download:
        try:
            minari.download_dataset(dataset_id)
            return minari.load_dataset(dataset_id)
        except Exception as err:  # no network, unknown id, ...
            reason = f"the Minari hub did not provide it: {type(err).__name__}: {err}"
    raise DatasetNotFoundError(
        f"Minari dataset {dataset_id!r} not found in the local datasets directory {datasets_root()} "
        f"(local ids: {local or 'none'}), and {reason}. Build local datasets with "
        "`python -m torchrl_rgm.generation.build --env hopper` (ids rgm/<env>/<level>-v0) or set "
        "MINARI_DATASETS_PATH to the directory that holds it."
    )


def _fingerprint(dataset: minari.MinariDataset) -> str:
    data_path = Path(dataset.storage.data_path)
    # the change time moves on every write and cannot be set back: a file rewritten with the same size and
    # modification time still gets a new key
    stats = [(p.name, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
             for p in sorted(data_path.glob("*")) if p.is_file() for st in [p.stat()]]
    return hashlib.sha1(json.dumps([CACHE_VERSION, str(data_path), stats]).encode()).hexdigest()[:16]


def _episodes_to_tensordict(dataset: minari.MinariDataset) -> TensorDict:
    cols = new_columns()
    infos: dict[str, list] = {}
    info_keys = None
    for episode in dataset.iterate_episodes():
        obs = np.asarray(episode.observations, dtype=np.float32)
        T = len(episode.actions)
        if obs.ndim != 2:
            raise DatasetError(f"{dataset.spec.dataset_id}: only flat Box observations are supported, got {obs.shape}.")
        append_episode(cols, obs[:-1], obs[1:], episode.actions, episode.rewards, episode.terminations,
                       episode.truncations, episode.id)
        ep_infos = episode.infos if isinstance(episode.infos, dict) else {}
        numeric = {
            k: np.asarray(v, dtype=np.float32)
            for k, v in ep_infos.items()
            if isinstance(v, np.ndarray) and v.ndim == 1 and len(v) in (T, T + 1) and np.issubdtype(v.dtype, np.number)
        }
        keys = set(numeric)
        info_keys = keys if info_keys is None else info_keys & keys
        for k, v in numeric.items():
            infos.setdefault(k, []).append(v[-T:])  # the info returned with each step
    if not cols["obs"]:
        raise DatasetError(f"{dataset.spec.dataset_id} holds no episodes.")
    td = columns_to_tensordict(cols)
    n = td.shape[0]
    if info_keys:
        td.set(("next", "info"), TensorDict({k: torch.from_numpy(np.concatenate(infos[k])) for k in sorted(info_keys)}, [n]))
    return td


def _dataset_fingerprint(dataset_id: str, download: bool, obs_keys=None) -> str:
    if _robomimic.is_robomimic_path(dataset_id):
        keys = list(obs_keys or _robomimic.DEFAULT_OBS_KEYS)
        return hashlib.sha1(json.dumps([CACHE_VERSION, _robomimic.fingerprint(dataset_id), keys]).encode()).hexdigest()[:16]
    return _fingerprint(find_dataset(dataset_id, download))


def load_transitions(dataset_id: str, *, download: bool = True, cache_dir: Path | None = None,
                     obs_keys=None) -> TensorDict:
    """All transitions of a Minari dataset or robomimic file as one memory-mapped TensorDict (cached).

    A ``dataset_id`` ending in ``.hdf5``/``.h5`` is the path of a robomimic file, read with
    :func:`torchrl_rgm.data.robomimic.read_transitions` (observation keys ``obs_keys``, in that
    order); anything else is a Minari id. Keys: ``observation``, ``action``, ``("next",
    observation | reward | terminated | truncated | done | last)``, ``("next", "info", <numeric
    per-step info>)`` (Minari), ``episode``, ``step``, ``episode_return``, ``transition_id``.
    """
    if _robomimic.is_robomimic_path(dataset_id):
        path = Path(dataset_id).expanduser().resolve()
        root = (cache_dir or cache_root()) / ("robomimic" + str(path).replace("/", "__")) / _dataset_fingerprint(
            str(path), download, obs_keys)
        if (root / "meta.json").exists():
            return TensorDict.load_memmap(root)
        td = _robomimic.read_transitions(path, obs_keys or _robomimic.DEFAULT_OBS_KEYS)
    else:
        dataset = find_dataset(dataset_id, download)
        root = (cache_dir or cache_root()) / dataset_id.replace("/", "__") / _fingerprint(dataset)
        if (root / "meta.json").exists():
            return TensorDict.load_memmap(root)
        try:
            td = _episodes_to_tensordict(dataset)
        except (OSError, ValueError, KeyError) as err:  # a damaged file: name it and say how to get a good one
            raise DatasetError(f"{dataset_id}: its files in {dataset.storage.data_path} cannot be read "
                               f"({type(err).__name__}: {str(err).splitlines()[0][:150]}); rebuild it "
                               "(python -m torchrl_rgm.generation.build, --overwrite) or delete it.") from None
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = owned_temporary(root.parent)
    except OSError as err:
        raise DatasetError(f"Cannot write the conversion cache {root.parent} ({err.strerror}): point "
                           "TORCHRL_RGM_CACHE at a writable directory.") from None
    try:
        td.memmap_(tmp)
        os.replace(tmp, root)  # atomic: a reader never sees a half-written cache
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (root / "meta.json").exists():
            raise
    return TensorDict.load_memmap(root)


def _process(union_id: str, expert_id: str, *, n_expert_trajectories: int, reward: str, reward_kwargs: dict,
             add_expert_to_union: bool, absorbing: bool, standardize: bool, reward_scaling: str,
             terminal_absorbing_loop: bool, obs_keys, download: bool, cache_dir: Path | None,
             expert_union_reward: str = "given", terminal_done: bool = False) -> RGMData:
    """The uncached work of :func:`load_rgm_data` (same arguments, all given)."""
    reward_kwargs = dict(reward_kwargs)
    raw_union = load_transitions(union_id, download=download, cache_dir=cache_dir, obs_keys=obs_keys)
    raw_expert = load_transitions(expert_id, download=download, cache_dir=cache_dir, obs_keys=obs_keys)
    for a, b, what in ((OBS, OBS, "observation"), ("action", "action", "action")):
        if raw_union.get(a).shape[1:] != raw_expert.get(b).shape[1:]:
            raise DatasetError(
                f"Expert and union datasets differ in {what} shape: {expert_id} has "
                f"{tuple(raw_expert.get(b).shape[1:])}, {union_id} has {tuple(raw_union.get(a).shape[1:])}. "
                "Use datasets of the same environment."
            )
    check_finite(raw_union, union_id)
    check_finite(raw_expert, expert_id)
    union_env, expert_env = (raw_union_metadata(i, download).get("env_id") for i in (union_id, expert_id))
    if union_env and expert_env and union_env != expert_env:
        raise DatasetError(
            f"The expert data come from another environment: {expert_id} was collected in {expert_env}, "
            f"{union_id} in {union_env}. Use the expert dataset of {union_env} (dataset.expert)."
        )
    expert = select_episodes(raw_expert, n_expert_trajectories, expert_id).clone()
    union = raw_union.clone()  # never write into the memory-mapped cache
    if expert_id != union_id:  # distinct random streams for the two datasets' transitions
        expert.set("transition_id", expert.get("transition_id") + (1 << 40))

    if reward == "sparse" and "threshold" not in reward_kwargs:
        returns = union[union.get("step") == 0].get("episode_return")
        reward_kwargs["threshold"] = float(torch.quantile(returns.double(), 0.9))
    transform = make_reward_transform(reward, **reward_kwargs)
    union, expert = transform(union), transform(expert)
    for td, name in ((union, union_id), (expert, expert_id)):  # a reward computed from stored infos may not be
        check_finite(td, name, keys=(REWARD,), source=f" after the {reward!r} reward (computed from the stored data)")

    expert.set("is_expert", torch.ones(expert.shape[0], 1, dtype=torch.bool))
    if expert_id == union_id:  # D^E ⊂ D^O already: flag those episodes, do not duplicate them
        flag = torch.isin(union.get("episode"), torch.unique(expert.get("episode")))
        union.set("is_expert", flag.unsqueeze(-1))
    else:
        union.set("is_expert", torch.zeros(union.shape[0], 1, dtype=torch.bool))
        if add_expert_to_union:
            added = expert.select(*union.keys(True, True)).clone()
            if expert_union_reward == "zero":  # the authors' code: expert transitions in the union earn 0
                added.set(REWARD, torch.zeros_like(added.get(REWARD)))
            union = torch.cat([union, added], 0)
    union, expert, initial, stats = finish_union(union, expert, standardize=standardize, reward_scaling=reward_scaling,
                                                 absorbing=absorbing, terminal_absorbing_loop=terminal_absorbing_loop,
                                                 terminal_done=terminal_done)
    obs_mean, obs_std, reward_mean, reward_std = stats

    meta = raw_union_metadata(union_id, download)
    return RGMData(
        union=union,
        expert=expert,
        initial_observation=initial.contiguous(),
        obs_mean=obs_mean,
        obs_std=obs_std,
        reward_mean=reward_mean,
        reward_std=reward_std,
        union_id=union_id,
        expert_id=expert_id,
        env_spec=meta.get("env_id"),
        ref_min_score=meta.get("ref_min_score"),
        ref_max_score=meta.get("ref_max_score"),
        info={"reward": repr(transform), "n_expert_trajectories": n_expert_trajectories,
              "expert_transitions": int(expert.shape[0]), "union_transitions": int(union.shape[0]),
              **({"env_meta": meta["env_meta"], "obs_keys": list(obs_keys or _robomimic.DEFAULT_OBS_KEYS)}
                 if "env_meta" in meta else {})},
    )


def load_rgm_data(
    union_id: str,
    expert_id: str | None = None,
    *,
    n_expert_trajectories: int = 1,
    reward: str = "true",
    reward_kwargs: dict | None = None,
    add_expert_to_union: bool = True,
    absorbing: bool = True,
    standardize: bool = True,
    reward_scaling: str = "zscore",
    terminal_absorbing_loop: bool = True,
    obs_keys=None,
    download: bool = True,
    cache_dir: Path | None = None,
    expert_union_reward: str = "given",
    terminal_done: bool = False,
) -> RGMData:
    """Union ``D``, expert ``D^E``, ``mu0`` and statistics for RGM, memory-mapped and cached.

    The expert set is the first ``n_expert_trajectories`` episodes of ``expert_id`` (default:
    the union's own; then those episodes are flagged in the union, not duplicated). The reward
    setting is applied to every transition the learner sees (union and expert) before
    standardisation; timeouts are dropped (not terminals); with ``add_expert_to_union`` (the
    paper's default) ``D = D^O ∪ D^E``; terminals lead to an absorbing state (its self-loop
    terminal or not, see :func:`~torchrl_rgm.data.absorbing.add_absorbing_states`). With ``standardize``
    observations are z-scored and rewards scaled by ``reward_scaling``: ``"zscore"`` (the
    paper: ``(r - mean) / std``), ``"scale"`` (``r / std``: keeps the sign, hence the meaning of
    termination, which a shift changes whenever episodes can end) or ``"none"``. The result is
    cached under a key of all these arguments and the datasets' fingerprints.

    The authors' protocol (``recipes/config/protocol/paper.yaml``) differs in three data choices:
    ``add_expert_to_union=False`` (the expert data train the discriminator only);
    ``expert_union_reward="zero"`` (where expert transitions are added to the union their reward
    is 0 — ``"given"``, the default, keeps the reward setting's); ``terminal_done=True``
    (terminal transitions keep ``done = 1`` next to the swapped-in absorbing state).

    Either id may be the path of a robomimic HDF5 file (``obs_keys``: its observation keys, in
    order; default :data:`~torchrl_rgm.data.robomimic.DEFAULT_OBS_KEYS`); scores are then success
    rates (``ref_min_score`` 0, ``ref_max_score`` 1: the normalised score is the success rate in %).
    """
    if reward_scaling not in REWARD_SCALINGS:
        raise ValueError(f"reward_scaling must be one of {REWARD_SCALINGS}, got {reward_scaling!r}.")
    if expert_union_reward not in EXPERT_UNION_REWARDS:
        raise ValueError(f"expert_union_reward must be one of {EXPERT_UNION_REWARDS}, got {expert_union_reward!r}.")
    expert_id = expert_id or union_id
    args = dict(n_expert_trajectories=n_expert_trajectories, reward=reward, reward_kwargs=dict(reward_kwargs or {}),
                add_expert_to_union=add_expert_to_union, absorbing=absorbing, standardize=standardize,
                reward_scaling=reward_scaling, terminal_absorbing_loop=bool(terminal_absorbing_loop),
                obs_keys=list(obs_keys) if obs_keys is not None else None)
    # the protocol options join the cache key only when set, so the default's cached conversions stay valid
    if expert_union_reward != "given":
        args["expert_union_reward"] = expert_union_reward
    if terminal_done:
        args["terminal_done"] = True
    prints = [_dataset_fingerprint(i, download, obs_keys) for i in (union_id, expert_id)]
    key = hashlib.sha1(json.dumps([CACHE_VERSION, union_id, expert_id, prints, args], sort_keys=True,
                                  default=repr).encode()).hexdigest()[:16]
    root = (cache_dir or cache_root()) / "processed" / key
    if (root / "rgm_meta.json").exists():
        tensors = TensorDict.load_memmap(root / "tensors")
        meta = json.loads((root / "rgm_meta.json").read_text())
        def plain(x):  # small tensors in memory, picklable with weights_only=True
            return x.as_subclass(torch.Tensor).clone()

        return RGMData(union=tensors["union"], expert=tensors["expert"],
                       initial_observation=plain(tensors["initial_observation"]), obs_mean=plain(tensors["obs_mean"]),
                       obs_std=plain(tensors["obs_std"]), **meta)
    data = _process(union_id, expert_id, download=download, cache_dir=cache_dir, **args)
    tensors = TensorDict(union=data.union, expert=data.expert, initial_observation=data.initial_observation,
                         obs_mean=data.obs_mean, obs_std=data.obs_std, batch_size=[])
    meta = {k: getattr(data, k) for k in ("reward_mean", "reward_std", "union_id", "expert_id", "env_spec",
                                         "ref_min_score", "ref_max_score", "info")}
    # Written whole beside its place, then renamed into it: the entry is complete or absent, and processes
    # converting the same data at once (a grid's runs) never delete or half-see each other's files.
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = owned_temporary(root.parent, key)
    try:
        tensors.memmap_(tmp / "tensors")
        (tmp / "rgm_meta.json").write_text(json.dumps(meta))
        if root.exists() and not (root / "rgm_meta.json").exists():
            shutil.rmtree(root, ignore_errors=True)  # left incomplete by an interrupted write of an older version
        os.replace(tmp, root)  # fails (the directory is not empty) when another process got there first
    except OSError:
        if not (root / "rgm_meta.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_rgm_data(union_id, expert_id, download=download, cache_dir=cache_dir, **args)


#: A temporary cache entry that names no owner (written before owners were named) is stale after this long.
UNOWNED_TEMPORARY_S = 24 * 3600
_OWNER = re.compile(r"-p(\d+)@(.+)-[^-]*$")


def owned_temporary(parent: Path, key: str = "") -> Path:
    """A new temporary directory in ``parent`` named after this process (``.tmp-[<key>-]p<pid>@<host>-...``), once
    the stale ones are gone (:func:`remove_stale_temporaries`): a conversion killed half-way leaves its entry behind,
    and the next conversion in the same place removes it."""
    remove_stale_temporaries(parent)
    return Path(tempfile.mkdtemp(dir=parent, prefix=f".tmp-{key + '-' if key else ''}p{os.getpid()}@"
                                                    f"{socket.gethostname()}-"))


def remove_stale_temporaries(parent: Path) -> list[str]:
    """Remove the temporary entries in ``parent`` that no live process owns: their owner, on this host, is gone (an
    entry of another host is left alone), or they name none and are older than :data:`UNOWNED_TEMPORARY_S`.
    Returns the names removed."""
    removed = []
    for path in Path(parent).glob(".tmp-*"):
        owner = _OWNER.search(path.name)
        try:
            if owner:
                stale = owner.group(2) == socket.gethostname() and not _alive(int(owner.group(1)))
            else:
                stale = time.time() - path.stat().st_mtime > UNOWNED_TEMPORARY_S
        except OSError:
            continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def raw_union_metadata(dataset_id: str, download: bool = True) -> dict:
    """A dataset's metadata (``env_id``, ``ref_min_score``, ``ref_max_score``, ...): Minari's, or a robomimic file's.

    For a robomimic file, see :func:`torchrl_rgm.data.robomimic.file_metadata`.
    """
    if _robomimic.is_robomimic_path(dataset_id):
        return _robomimic.file_metadata(dataset_id)
    dataset = find_dataset(dataset_id, download)
    meta = dict(dataset.storage.metadata)
    spec = dataset.spec.env_spec
    meta["env_id"] = spec.id if spec is not None else None
    return meta
