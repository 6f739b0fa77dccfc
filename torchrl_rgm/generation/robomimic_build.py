"""Generate robomimic-format HDF5 datasets with scripted robosuite controllers.

    python -m torchrl_rgm.generation.robomimic_build --task lift            # ph (200 demos) + mg (1000 episodes)
    python -m torchrl_rgm.generation.robomimic_build --task can --jobs 2

robomimic's downloads are unreachable here, so this drives robosuite's ``Lift`` / ``PickPlaceCan``
(Panda, OSC_POSE, 20 Hz, sparse reward) with a scripted pick(-and-place) controller and writes files
in robomimic's layout, readable by robomimic's own ``SequenceDataset``::

    data (attrs: total, env_args = {"env_name", "type": 1, "env_kwargs"})
    data/demo_<k> (attrs: num_samples, seed, reset_seed, quality)
        obs/<key>, next_obs/<key>, actions [T, 7], rewards [T], dones [T], states [T, n]
    mask/<filter key>  (names of demos: train, valid; and success, failure)

- ``ph`` ("proficient human" stand-in): a clean controller; only successful episodes are kept.
- ``mg`` ("machine generated" stand-in): episodes of controllers of random quality — action noise,
  grasp-target errors, random-action bursts, early releases — kept whether they succeed or not.

An episode ends at the first success (``dones = 1`` there, reward 1) or at the horizon
(``dones = 0``: a timeout, not a terminal). Episode ``k`` of a dataset is seeded with
``(seed, dataset, k)``, so the same seed writes the same file whatever ``--jobs``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..data.robomimic import DEFAULT_OBS_KEYS as OBS_KEYS, make_robosuite_env, robomimic_obs

__all__ = ["TASKS", "build_task", "default_root", "dataset_path", "env_meta", "DATASETS", "FILE_NAMES",
           "Task", "ScriptedController", "write_hdf5", "main"]


@dataclass(frozen=True)
class Task:
    """A robomimic task: the robosuite environment, what the scripted controller does, the horizons."""

    #: The robosuite environment (``Lift``, ``PickPlaceCan``).
    env_name: str
    #: Carry the object to a bin after lifting it (Can) or just lift it (Lift).
    place: bool
    #: Episode horizon of the ``ph`` demos.
    ph_horizon: int
    #: Episode horizon of the ``mg`` episodes.
    mg_horizon: int
    #: Scales how bad a low-quality ``mg`` controller gets (carrying a can is less forgiving).
    mg_severity: float = 1.0


#: The tasks by name (``--task``) → :class:`Task`.
TASKS = {"lift": Task("Lift", place=False, ph_horizon=200, mg_horizon=150),
         "can": Task("PickPlaceCan", place=True, ph_horizon=400, mg_horizon=300, mg_severity=0.75)}
#: The datasets written per task, ``ph`` (clean, successful demos) and ``mg`` (mixed quality).
DATASETS = ("ph", "mg")
#: File name of each dataset, as robomimic names them.
FILE_NAMES = {"ph": "low_dim.hdf5", "mg": "low_dim_sparse.hdf5"}


def default_root() -> Path:
    """Where the files go by default: ``$TORCHRL_RGM_ROBOMIMIC_DATA``, else ``~/.torchrl_rgm/robomimic``."""
    return Path(os.environ.get("TORCHRL_RGM_ROBOMIMIC_DATA", Path.home() / ".torchrl_rgm" / "robomimic"))


def dataset_path(task: str, dataset: str, root: Path | None = None) -> Path:
    """``<root>/<task>/<ph|mg>/<file>``, robomimic's own layout."""
    _check(task, dataset)
    return Path(root or default_root()) / task / dataset / FILE_NAMES[dataset]


def _check(task: str, dataset: str = "ph") -> None:
    if task not in TASKS:
        raise ValueError(f"Unknown robomimic task {task!r}; accepted values are {sorted(TASKS)}.")
    if dataset not in DATASETS:
        raise ValueError(f"Unknown robomimic dataset {dataset!r}; accepted values are {list(DATASETS)}.")


def env_meta(task: str) -> dict:
    """The env metadata robomimic stores in ``data.attrs["env_args"]`` (type 1 = robosuite)."""
    from robosuite.controllers import load_controller_config

    _check(task)
    return {
        "env_name": TASKS[task].env_name,
        "type": 1,
        "env_kwargs": {
            "has_renderer": False, "has_offscreen_renderer": False, "ignore_done": True, "use_object_obs": True,
            "use_camera_obs": False, "camera_depths": False, "control_freq": 20, "reward_shaping": False,
            "robots": ["Panda"], "controller_configs": load_controller_config(default_controller="OSC_POSE"),
        },
    }


class ScriptedController:
    """Pick (and place) with OSC_POSE position deltas: above → down → grasp → up (→ over bin → release).

    ``quality`` in [0, 1] sets how clean it is: action noise, grasp-target error, the chance of a
    random-action burst per step and of releasing early all grow as it falls. 1 = the ph controller.
    """

    def __init__(self, task: Task, env, rng: np.random.Generator, quality: float = 1.0):
        self.task, self.rng = task, rng
        bad = (1.0 - quality) * task.mg_severity
        self.noise = 0.02 + 0.4 * bad
        self.grasp_error = rng.normal(0.0, 0.02 * bad, size=3) * np.array([1, 1, 0.5])
        self.burst_prob = 0.04 * bad
        self.release_prob = 0.01 * bad
        self.gain = rng.uniform(8, 12) if quality >= 1 else rng.uniform(4, 12)
        self.phase, self.timer, self.burst, self.burst_action = 0, 0, 0, None
        if task.place:
            name = env.obj_to_use if hasattr(env, "obj_to_use") else "can"
            self.obj_key = f"{name[0].upper()}{name[1:]}_pos"
            self.target = np.array(env.target_bin_placements[env.object_to_id[name.lower()]])
        else:
            self.obj_key, self.target = "cube_pos", None

    def __call__(self, obs: dict) -> np.ndarray:
        eef, obj = obs["robot0_eef_pos"], obs[self.obj_key]
        grip_at = obj + self.grasp_error + np.array([0.0, 0.0, -0.005 if not self.task.place else 0.0])
        a = np.zeros(7)
        if self.phase == 0:  # above the object, gripper open
            goal, a[6] = grip_at + np.array([0, 0, 0.08]), -1.0
            if np.linalg.norm(goal - eef) < 0.012:
                self.phase, self.timer = 1, 0
        elif self.phase == 1:  # down to it (or as far as the fingers go)
            goal, a[6] = grip_at, -1.0
            self.timer += 1
            # the can's top stops the fingers above its centre: after a while, close once centred
            centred = np.linalg.norm((goal - eef)[:2]) < (0.02 if self.task.place else 0.01)
            if np.linalg.norm(goal - eef) < 0.008 or (self.timer > 25 and centred):
                self.phase, self.timer = 2, 0
        elif self.phase == 2:  # close
            goal, a[6] = grip_at, 1.0
            self.timer += 1
            if self.timer > 8:
                self.phase, self.carry_z = 3, eef[2] + 0.15
        elif self.phase == 3:  # up
            goal, a[6] = np.array([eef[0], eef[1], self.carry_z if self.task.place else eef[2] + 0.1]), 1.0
            if self.task.place and eef[2] > self.carry_z - 0.02:
                self.phase = 4
        elif self.phase == 4:  # over the bin
            goal, a[6] = np.array([self.target[0], self.target[1], eef[2]]), 1.0
            if np.linalg.norm((goal - eef)[:2]) < 0.02:
                self.phase = 5
            elif np.linalg.norm(obj - eef) > 0.06:  # dropped it on the way: start over
                self.phase, self.timer = 0, 0
        else:  # release
            goal, a[6] = eef, -1.0
        a[:3] = self.gain * (goal - eef)
        if self.phase in (2, 3, 4) and self.rng.random() < self.release_prob:
            self.phase, self.timer = 0, 0  # lets go and starts over
        if self.burst == 0 and self.rng.random() < self.burst_prob:
            self.burst, self.burst_action = int(self.rng.integers(5, 15)), self.rng.uniform(-1, 1, 7)
        if self.burst > 0:
            self.burst -= 1
            grip = a[6]
            a = self.burst_action.copy()
            if self.task.place:  # carrying: a burst jolts the arm but keeps the grip (early releases drop it)
                a[6] = grip
        a[:6] += self.rng.normal(0.0, self.noise, 6)
        return np.clip(a, -1.0, 1.0)


def _episode(args) -> dict:
    """One episode: ``(task, dataset, seed, k)`` → arrays in robomimic's layout."""
    task_name, dataset, seed, k = args
    task = TASKS[task_name]
    env = _worker_env(task_name)
    rng = np.random.default_rng([seed, DATASETS.index(dataset), k])
    reset_seed = int(rng.integers(2**31))
    np.random.seed(reset_seed)  # robosuite's placement sampler draws from np.random (RobomimicEnv.reset(seed=...))
    quality = 1.0 if dataset == "ph" else float(rng.uniform(0.0, 1.0))
    obs = robomimic_obs(env.reset())
    controller = ScriptedController(task, env, rng, quality)
    horizon = task.ph_horizon if dataset == "ph" else task.mg_horizon
    steps = {"obs": [], "next_obs": [], "actions": [], "rewards": [], "dones": [], "states": []}
    success = False
    for _ in range(horizon):
        steps["states"].append(env.sim.get_state().flatten())
        action = controller(obs)
        next_obs, reward, _, _ = env.step(action)
        next_obs = robomimic_obs(next_obs)
        success = bool(env._check_success())
        steps["obs"].append({key: obs[key] for key in OBS_KEYS})
        steps["next_obs"].append({key: next_obs[key] for key in OBS_KEYS})
        steps["actions"].append(action)
        steps["rewards"].append(float(reward))
        steps["dones"].append(int(success))
        obs = next_obs
        if success:
            break
    return {
        "obs": {key: np.stack([o[key] for o in steps["obs"]]).astype(np.float64) for key in OBS_KEYS},
        "next_obs": {key: np.stack([o[key] for o in steps["next_obs"]]).astype(np.float64) for key in OBS_KEYS},
        "actions": np.stack(steps["actions"]).astype(np.float64),
        "rewards": np.asarray(steps["rewards"], dtype=np.float64),
        "dones": np.asarray(steps["dones"], dtype=np.int64),
        "states": np.stack(steps["states"]).astype(np.float64),
        "success": success, "quality": quality, "seed": k, "reset_seed": reset_seed,
    }


_ENVS: dict = {}


def _worker_env(task_name: str):
    if task_name not in _ENVS:
        _ENVS[task_name] = make_robosuite_env(env_meta(task_name), horizon=max(TASKS[task_name].ph_horizon,
                                                                               TASKS[task_name].mg_horizon))
    return _ENVS[task_name]


def _run(jobs: int, work: list) -> list:
    if jobs <= 1:
        return [_episode(w) for w in work]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(_episode, work, chunksize=4))


def _collect(task: str, dataset: str, episodes: int, seed: int, jobs: int, log) -> tuple[list, int]:
    """``ph``: the first ``episodes`` successes (and how many tries); ``mg``: ``episodes`` episodes."""
    if dataset == "mg":
        return _run(jobs, [(task, dataset, seed, k) for k in range(episodes)]), episodes
    kept, k = [], 0
    while len(kept) < episodes:
        batch = max(2 * jobs, episodes - len(kept))
        results = _run(jobs, [(task, dataset, seed, i) for i in range(k, k + batch)])
        k += batch
        kept += [r for r in results if r["success"]]
        if k > 20 * episodes + 20 and not kept:
            raise RuntimeError(f"The scripted {task} controller never succeeded in {k} episodes.")
        log(f"  {task}/{dataset}: {len(kept)}/{episodes} successful demos after {k} episodes")
    return kept[:episodes], k


def write_hdf5(path: Path, episodes: list, meta: dict, valid_fraction: float = 0.1) -> None:
    """Write ``episodes`` in robomimic's layout, atomically (temp file + rename)."""
    import h5py

    names = [f"demo_{i}" for i in range(len(episodes))]
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            data = f.create_group("data")
            for name, ep in zip(names, episodes):
                g = data.create_group(name)
                for group in ("obs", "next_obs"):
                    for key in OBS_KEYS:
                        g.create_dataset(f"{group}/{key}", data=ep[group][key])
                for key in ("actions", "rewards", "dones", "states"):
                    g.create_dataset(key, data=ep[key])
                g.attrs["num_samples"] = len(ep["actions"])
                g.attrs["seed"] = ep["seed"]
                g.attrs["reset_seed"] = ep["reset_seed"]
                g.attrs["quality"] = ep["quality"]
            data.attrs["total"] = int(sum(len(ep["actions"]) for ep in episodes))
            data.attrs["env_args"] = json.dumps(meta, indent=4)
            n_valid = max(1, int(round(valid_fraction * len(names)))) if len(names) > 1 else 0
            masks = {"train": names[: len(names) - n_valid], "valid": names[len(names) - n_valid:],
                     "success": [n for n, ep in zip(names, episodes) if ep["success"]],
                     "failure": [n for n, ep in zip(names, episodes) if not ep["success"]]}
            for key, members in masks.items():
                f.create_dataset(f"mask/{key}", data=np.array(members, dtype="S"))
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the dataset from other users


def build_task(task: str, *, root: Path | None = None, ph_episodes: int = 200, mg_episodes: int = 1000,
               seed: int = 0, jobs: int = 1, datasets=DATASETS, overwrite: bool = False, log=print) -> dict:
    """Write ``<root>/<task>/ph`` and ``/mg``; returns their paths, sizes and success rates."""
    for d in datasets:
        _check(task, d)
    for name, n in (("ph_episodes", ph_episodes), ("mg_episodes", mg_episodes)):
        if n < 1:
            raise ValueError(f"{name} must be ≥ 1, got {n}.")
    paths = {d: dataset_path(task, d, root) for d in datasets}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing} already exist; pass --overwrite to replace them (atomically).")
    meta = env_meta(task)
    summary = {}
    for d in datasets:
        t0 = time.time()
        episodes, tries = _collect(task, d, ph_episodes if d == "ph" else mg_episodes, seed, jobs, log)
        write_hdf5(paths[d], episodes, meta)
        lengths = [len(ep["actions"]) for ep in episodes]
        summary[d] = {"path": str(paths[d]), "episodes": len(episodes), "transitions": int(sum(lengths)),
                      "success_rate": float(np.mean([ep["success"] for ep in episodes])),
                      "controller_success_rate": float(len(episodes) / tries) if d == "ph" else None,
                      "mean_length": float(np.mean(lengths)), "seconds": round(time.time() - t0, 1)}
        log(f"{task}/{d}: {json.dumps(summary[d])}")
    return summary


def main(argv=None) -> dict:
    """Command line: generate the ``--datasets`` of ``--task``; returns :func:`build_task`'s summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--root", type=Path, default=None, help=f"output root (default {default_root()})")
    parser.add_argument("--ph-episodes", type=int, default=200, help="successful clean demos (robomimic ph: 200)")
    parser.add_argument("--mg-episodes", type=int, default=1000, help="mixed-quality episodes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (same files for any value)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    return build_task(args.task, root=args.root, ph_episodes=args.ph_episodes, mg_episodes=args.mg_episodes,
                      seed=args.seed, jobs=args.jobs, datasets=args.datasets, overwrite=args.overwrite)


if __name__ == "__main__":
    main()
