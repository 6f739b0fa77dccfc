"""The gymnasium MuJoCo tasks the datasets come from.

A name is an environment (``hopper``, ``halfcheetah``, ``walker2d``: its own reward) or a task
of a family, ``<env>-<task>`` (:mod:`torchrl_rgm.data.tasks`: same dynamics, another reward).
"""
from __future__ import annotations

import gymnasium as gym

from .tasks import TASKS, TaskRewardWrapper, get_task

__all__ = ["ENVS", "env_names", "env_id", "make_env"]

#: The environments, short name → gymnasium id.
ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}


def env_names() -> list[str]:
    """Every accepted name: the environments, then the tasks."""
    return sorted(ENVS) + sorted(TASKS)


def env_id(name: str) -> str:
    """The gymnasium id of an environment or of a task's environment."""
    if name in TASKS:
        name = TASKS[name].env
    try:
        return ENVS[name]
    except KeyError:
        raise ValueError(f"Unknown env {name!r}; accepted values are {env_names()}.") from None


def make_env(name: str, **kwargs) -> gym.Env:
    """The gymnasium environment of ``name``; a task's is made with its ``env_kwargs`` and wrapped in
    :class:`~torchrl_rgm.data.tasks.TaskRewardWrapper` to return the task's reward.

    ``kwargs`` go to ``gym.make`` (overriding a task's own ``env_kwargs``).
    """
    if name in TASKS:
        task = get_task(name)
        return TaskRewardWrapper(gym.make(env_id(task.env), **{**task.env_kwargs, **kwargs}), task)
    return gym.make(env_id(name), **kwargs)
