"""robomimic HDF5 files → transition TensorDicts, and their evaluation environment.

:func:`read_transitions` reads a robomimic-format file (robomimic's downloads, or the files
:mod:`torchrl_rgm.generation.robomimic_build` writes) into the same flat transition TensorDict as the
Minari loader, so :func:`~torchrl_rgm.data.minari.load_rgm_data` builds RGM's buffers from it unchanged
(pass the file's path as the dataset id). It needs only h5py; robomimic's own reader
(``SequenceDataset``) is what the tests check it against.

:class:`RobomimicEnv` is the evaluation environment: robosuite, made from the file's env metadata
with the kwargs robomimic would pass, observations flattened in the loader's key order, the task's
sparse reward, ``terminated`` on success. :func:`make_torchrl_env` wraps it for TorchRL.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
from tensordict import TensorDict
from torchrl.envs import GymWrapper

from .transitions import append_episode, columns_to_tensordict, new_columns

__all__ = ["DEFAULT_OBS_KEYS", "RobomimicEnv", "RobomimicFileError", "env_meta_from_file", "is_robomimic_path",
           "make_robosuite_env", "make_torchrl_env", "read_transitions", "robomimic_obs", "fingerprint",
           "file_metadata"]

#: The low-dimensional observation keys read by default, concatenated in this order.
DEFAULT_OBS_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object")
SUFFIXES = (".hdf5", ".h5")


class RobomimicFileError(ValueError):
    """A file that is not a readable robomimic dataset (not HDF5, missing groups or keys, inconsistent lengths)."""


def is_robomimic_path(dataset_id: str) -> bool:
    """Dataset ids that are paths to HDF5 files are robomimic files; anything else is a Minari id."""
    return str(dataset_id).endswith(SUFFIXES)


def _require(path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"robomimic file {path} does not exist. Generate one with "
            "`python -m torchrl_rgm.generation.robomimic_build --task lift` or pass the path of a downloaded file."
        )
    return path


def fingerprint(path) -> str:
    """A short hash of a file's resolved path, size, inode and modification and change times: the cache key of its
    transitions (the change time moves on every write and cannot be set back, so a file rewritten with the same
    size and modification time gets a new key)."""
    p = _require(path).resolve()
    st = p.stat()
    return hashlib.sha1(json.dumps([str(p), st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]).encode()).hexdigest()[:16]


def _open(path):
    import h5py

    path = _require(path)
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise RobomimicFileError(f"{path} is not a readable HDF5 file ({err}); expected a robomimic dataset.") from None


def _demos(f, path, filter_key):
    if "data" not in f:
        raise RobomimicFileError(
            f"{path} is not a robomimic file: it has no 'data' group (top-level keys: {sorted(f.keys())}). "
            "robomimic files hold data/demo_<k>/{obs,next_obs,actions,rewards,dones}."
        )
    if filter_key is not None:
        if f"mask/{filter_key}" not in f:
            masks = sorted(f["mask"].keys()) if "mask" in f else []
            raise RobomimicFileError(f"{path} has no filter key {filter_key!r} (mask/ holds {masks or 'nothing'}).")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f[f"mask/{filter_key}"][()]]
    else:
        names = list(f["data"].keys())
    names = sorted(names, key=lambda n: int(n.split("_")[-1]) if n.split("_")[-1].isdigit() else n)
    if not names:
        raise RobomimicFileError(f"{path} holds no demos under 'data'" + (f" for filter key {filter_key!r}." if filter_key else "."))
    return names


def env_meta_from_file(path) -> dict:
    """``data.attrs["env_args"]`` (what robomimic's ``FileUtils.get_env_metadata_from_dataset`` reads)."""
    with _open(path) as f:
        if "data" not in f or "env_args" not in f["data"].attrs:
            raise RobomimicFileError(f"{path} has no env metadata (data.attrs['env_args']); it is not a robomimic file.")
        return json.loads(f["data"].attrs["env_args"])


def read_transitions(path, obs_keys=DEFAULT_OBS_KEYS, filter_key: str | None = None) -> TensorDict:
    """Every transition of a robomimic file, in the Minari loader's layout.

    ``observation`` / ``("next", "observation")`` concatenate ``obs_keys`` in order (float32).
    ``dones`` are terminals (robomimic sets them on task success); the last step of an episode
    that did not end done is a timeout (``truncated``). ``episode`` is the demo's number.
    Every demo is checked before anything is converted: a missing group, key or a length that
    disagrees with ``actions`` raises one error naming the file, the demo and the key.
    """
    obs_keys = tuple(obs_keys)
    if not obs_keys:
        raise ValueError("obs_keys is empty; robomimic low-dim keys are e.g. " + ", ".join(DEFAULT_OBS_KEYS))
    with _open(path) as f:
        names = _demos(f, path, filter_key)
        for name in names:  # validate everything first: no half-converted data, one clear error
            g = f["data"][name]
            missing = [k for k in ("actions", "rewards", "dones", "obs", "next_obs") if k not in g]
            if missing:
                raise RobomimicFileError(f"{path}: data/{name} lacks {missing}; robomimic demos hold "
                                         "obs, next_obs, actions, rewards and dones.")
            T = g["actions"].shape[0]
            for group in ("obs", "next_obs"):
                absent = [k for k in obs_keys if k not in g[group]]
                if absent:
                    raise RobomimicFileError(
                        f"{path}: data/{name}/{group} lacks observation keys {absent} (it has {sorted(g[group].keys())}); "
                        "choose obs_keys among those."
                    )
            lengths = {k: g[k].shape[0] for k in ("rewards", "dones")}
            lengths.update({f"{grp}/{k}": g[grp][k].shape[0] for grp in ("obs", "next_obs") for k in obs_keys})
            wrong = {k: n for k, n in lengths.items() if n != T}
            if wrong:
                raise RobomimicFileError(f"{path}: data/{name} has {T} actions but lengths {wrong}; "
                                         "every per-step array of a demo must have one row per action.")
            if T == 0:
                raise RobomimicFileError(f"{path}: data/{name} is empty (0 actions).")
        cols = new_columns()
        for name in names:
            g = f["data"][name]
            T = g["actions"].shape[0]
            flat = [np.concatenate([np.asarray(g[grp][k], dtype=np.float32).reshape(T, -1) for k in obs_keys], -1)
                    for grp in ("obs", "next_obs")]
            term = np.asarray(g["dones"]).reshape(T).astype(bool)
            trunc = np.zeros(T, dtype=bool)
            trunc[-1] = not term[-1]  # an episode that did not end done ended at the horizon: a timeout
            number = name.split("_")[-1]
            append_episode(cols, flat[0], flat[1], g["actions"][()], g["rewards"][()], term, trunc,
                           int(number) if number.isdigit() else len(cols["obs"]))
    return columns_to_tensordict(cols)


def file_metadata(path) -> dict:
    """What RGMData needs: the env name, and the score range (success rate: return 0 or 1)."""
    meta = env_meta_from_file(path)
    return {"env_id": meta.get("env_name"), "ref_min_score": 0.0, "ref_max_score": 1.0, "env_meta": meta}


def make_robosuite_env(meta: dict, **overrides):
    """A robosuite env from robomimic env metadata, with the kwargs robomimic's ``EnvRobosuite`` passes.

    robomimic 0.3.0's ``EnvRobosuite`` imports ``mujoco_py`` (unmaintained, not installable here),
    so this makes the environment with robosuite directly: low-dimensional observations, no
    rendering, ``ignore_done`` (the caller owns the horizon).
    """
    import robosuite

    if meta.get("type") != 1:
        raise ValueError(f"env metadata type {meta.get('type')!r} is not robosuite (1); only robosuite files are supported.")
    kwargs = dict(meta["env_kwargs"])
    kwargs.update(has_renderer=False, has_offscreen_renderer=False, ignore_done=True, use_object_obs=True,
                  use_camera_obs=False, camera_depths=False)
    kwargs.update(overrides)
    return robosuite.make(meta["env_name"], **kwargs)


def robomimic_obs(obs: dict) -> dict:
    """robosuite's observation dict with robomimic's ``object`` key (= ``object-state``)."""
    out = dict(obs)
    out["object"] = np.asarray(obs["object-state"])
    return out


class RobomimicEnv(gym.Env):
    """robosuite, made from robomimic env metadata; flat observations in ``obs_keys`` order.

    Reward is the file's sparse task reward; ``terminated`` is task success (as the datasets'
    ``dones``), ``truncated`` the horizon. ``reset(seed=k)`` seeds robosuite's placement sampler,
    which draws from NumPy's global generator.
    """

    metadata = {"render_modes": []}

    def __init__(self, env_meta: dict, obs_keys=DEFAULT_OBS_KEYS, horizon: int = 400):
        self.obs_keys, self.horizon = tuple(obs_keys), int(horizon)
        self.env = make_robosuite_env(env_meta, horizon=self.horizon)
        low, high = self.env.action_spec
        self.action_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32))
        obs = self._flat(self.env.reset())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=obs.shape, dtype=np.float32)
        self._t = 0

    def _flat(self, obs: dict) -> np.ndarray:
        obs = robomimic_obs(obs)
        missing = [k for k in self.obs_keys if k not in obs]
        if missing:
            raise KeyError(f"robosuite's {type(self.env).__name__} observations lack {missing}; it has {sorted(obs)}.")
        return np.concatenate([np.asarray(obs[k], dtype=np.float32).reshape(-1) for k in self.obs_keys])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            np.random.seed(seed)
        self._t = 0
        return self._flat(self.env.reset()), {}

    def step(self, action):
        obs, reward, _, _ = self.env.step(np.asarray(action, dtype=np.float64))
        self._t += 1
        success = bool(self.env._check_success())
        return self._flat(obs), float(reward), success, self._t >= self.horizon, {"success": success}

    def close(self):
        self.env.close()


def make_torchrl_env(path, obs_keys=DEFAULT_OBS_KEYS, horizon: int = 400, **kwargs):
    """The evaluation environment of a robomimic file as a TorchRL ``GymWrapper``."""
    return GymWrapper(RobomimicEnv(env_meta_from_file(path), obs_keys, horizon), **kwargs)
