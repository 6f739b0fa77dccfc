"""The flat transition layout every loader produces (Minari datasets, robomimic files)."""
from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict

from .._keys import OBS

__all__ = ["COLUMNS", "new_columns", "append_episode", "columns_to_tensordict"]

#: The per-episode columns a loader fills (:func:`new_columns`, :func:`append_episode`).
COLUMNS = ("obs", "next_obs", "act", "rew", "term", "trunc", "episode", "step", "ret", "last")


def new_columns() -> dict[str, list]:
    """Empty per-episode columns, one list per name of :data:`COLUMNS`, for :func:`append_episode`."""
    return {k: [] for k in COLUMNS}


def append_episode(cols: dict[str, list], obs, next_obs, action, reward, terminated, truncated, episode: int) -> None:
    """Add one episode of ``T`` steps; ``last`` marks the last transition a loader keeps (a timeout's
    own transition is dropped, so it is the one before it)."""
    T = len(action)
    term, trunc = np.asarray(terminated, dtype=bool).reshape(T), np.asarray(truncated, dtype=bool).reshape(T)
    reward = np.asarray(reward, dtype=np.float32).reshape(T)
    last = np.zeros(T, dtype=bool)
    last[T - 1 if term[-1] or not trunc[-1] or T < 2 else T - 2] = True
    cols["obs"].append(np.asarray(obs, dtype=np.float32))
    cols["next_obs"].append(np.asarray(next_obs, dtype=np.float32))
    cols["act"].append(np.asarray(action, dtype=np.float32).reshape(T, -1))
    cols["rew"].append(reward)
    cols["term"].append(term)
    cols["trunc"].append(trunc)
    cols["episode"].append(np.full(T, episode, dtype=np.int64))
    cols["step"].append(np.arange(T, dtype=np.int64))
    cols["ret"].append(np.full(T, reward.sum(), dtype=np.float32))
    cols["last"].append(last)


def columns_to_tensordict(cols: dict[str, list]) -> TensorDict:
    """Per-episode arrays (one list entry per episode, see :data:`COLUMNS`) → one flat TensorDict.

    Keys: ``observation``, ``action``, ``episode``, ``step``, ``episode_return``, ``transition_id``
    and ``("next", observation | reward | terminated | truncated | done | last)``.
    """
    cat = {k: torch.from_numpy(np.concatenate(v)) for k, v in cols.items()}
    n = cat["obs"].shape[0]
    return TensorDict(
        {
            OBS: cat["obs"],
            "action": cat["act"],
            "episode": cat["episode"],
            "step": cat["step"],
            "episode_return": cat["ret"],
            "transition_id": torch.arange(n),
            "next": {
                "observation": cat["next_obs"],
                "reward": cat["rew"].unsqueeze(-1),
                "terminated": cat["term"].unsqueeze(-1),
                "truncated": cat["trunc"].unsqueeze(-1),
                "done": (cat["term"] | cat["trunc"]).unsqueeze(-1),
                "last": cat["last"].unsqueeze(-1),
            },
        },
        [n],
    )
