"""The gymnasium MuJoCo tasks the datasets come from."""
from __future__ import annotations

import gymnasium as gym

ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}


def env_id(name: str) -> str:
    try:
        return ENVS[name]
    except KeyError:
        raise ValueError(f"Unknown env {name!r}; accepted values are {sorted(ENVS)}.") from None


def make_env(name: str, **kwargs) -> gym.Env:
    return gym.make(env_id(name), **kwargs)
