"""The gymnasium MuJoCo environments the datasets come from (:data:`ENVS`, :func:`make_env`) and their task
families: the same MuJoCo dynamics, different rewards (the multi-task data-sharing setting).

A name is an environment (``hopper``, ``halfcheetah``, ``walker2d``: its own reward) or a task of a family.

A task is named ``<env>-<task>`` and its reward is a documented function of the per-step
information the datasets log (:data:`~torchrl_rgm.generation.build.INFO_KEYS` of :mod:`torchrl_rgm.generation.build`):

========================== ===================================================================
task                       reward
========================== ===================================================================
halfcheetah-run-forward    ``x_velocity + reward_ctrl`` (HalfCheetah-v5's own reward)
halfcheetah-run-backward   ``-x_velocity + reward_ctrl`` (HalfCheetah-v5 with
                           ``forward_reward_weight=-1``)
halfcheetah-jump           ``15 * z_position - |x_velocity| + reward_ctrl``: height of the torso
                           above its initial height (``z_position`` = ``qpos[1]``), running
                           penalised
walker2d-run-forward       ``x_velocity + reward_ctrl + reward_survive`` (Walker2d-v5's own)
walker2d-run-backward      ``-x_velocity + reward_ctrl + reward_survive`` (Walker2d-v5 with
                           ``forward_reward_weight=-1``)
========================== ===================================================================

``reward_ctrl`` is the environment's own control cost (``-0.1 |a|²`` for HalfCheetah,
``-0.001 |a|²`` for Walker2d) and ``reward_survive`` its healthy reward (1 per step while
healthy; Walker2d still terminates when it falls). Where a task is one of the environment's own
rewards (keyword arguments of ``gym.make``), :func:`torchrl_rgm.generation.tasks.make_env` passes those arguments and the
function above equals the environment's reward step for step (tested); for the others
(``jump``) the :class:`TaskRewardWrapper` computes it. Following Conservative Data Sharing
(Yu et al., 2021), which used walker2d run-forward / run-backward / jump.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

__all__ = ["Task", "TASKS", "TaskRewardWrapper", "get_task", "task_reward", "ENVS", "env_names", "env_id",
           "make_env"]

JUMP_HEIGHT_WEIGHT = 15.0


def _get(info: Mapping, key: str):
    try:
        return info[key]
    except KeyError:
        raise KeyError(
            f"The task reward needs the per-step info {key!r}; datasets built by "
            "torchrl_rgm.generation.build (after the task families were added) log it. Rebuild the dataset "
            "with `python -m torchrl_rgm.generation.build --env <env> --overwrite`."
        ) from None


def _abs(x):
    return x.abs() if isinstance(x, torch.Tensor) else np.abs(x)


def _run(direction: float, survive: bool) -> Callable:
    def reward(info):
        r = direction * _get(info, "x_velocity") + _get(info, "reward_ctrl")
        return r + _get(info, "reward_survive") if survive else r

    return reward


def _jump(info):
    return JUMP_HEIGHT_WEIGHT * _get(info, "z_position") - _abs(_get(info, "x_velocity")) + _get(info, "reward_ctrl")


@dataclass(frozen=True)
class Task:
    """A reward on an environment's dynamics.

    ``env_kwargs`` are the ``gym.make`` keyword arguments that make the environment's own reward
    the task's (empty when there are none); ``policies`` names the directory of shipped behaviour
    policies (``run-forward`` is the environments' default task: it reuses their policies).
    """

    env: str
    name: str
    reward: Callable = field(repr=False, compare=False)
    env_kwargs: dict = field(default_factory=dict)
    own_reward: bool = False  # the environment made with env_kwargs already returns this reward
    policies: str | None = None

    @property
    def key(self) -> str:
        return f"{self.env}-{self.name}"

    @property
    def policy_name(self) -> str:
        return self.policies or self.key


#: The tasks of the families, by name (``<env>-<task>``, see the table above).
TASKS: dict[str, Task] = {
    t.key: t
    for t in (
        Task("halfcheetah", "run-forward", _run(1.0, False), own_reward=True, policies="halfcheetah"),
        Task("halfcheetah", "run-backward", _run(-1.0, False), {"forward_reward_weight": -1.0}, own_reward=True),
        Task("halfcheetah", "jump", _jump),
        Task("walker2d", "run-forward", _run(1.0, True), own_reward=True, policies="walker2d"),
        Task("walker2d", "run-backward", _run(-1.0, True), {"forward_reward_weight": -1.0}, own_reward=True),
    )
}


def get_task(key: str) -> Task:
    """The :class:`Task` named ``key`` (``<env>-<task>``); a :class:`ValueError` lists the valid names."""
    try:
        return TASKS[key]
    except KeyError:
        raise ValueError(f"Unknown task {key!r}; accepted values are {sorted(TASKS)}.") from None


def task_reward(key: str, info: Mapping):
    """The reward of task ``key`` from per-step infos (NumPy arrays, tensors or floats)."""
    return get_task(key).reward(info)


class TaskRewardWrapper(gym.Wrapper):
    """Logs ``z_position`` (``qpos[1]``, the torso height) in the infos and returns the task's reward."""

    def __init__(self, env: gym.Env, task: Task):
        super().__init__(env)
        self.task = task

    def _with_height(self, info: dict) -> dict:
        info = dict(info)
        info["z_position"] = float(self.env.unwrapped.data.qpos[1])
        return info

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, self._with_height(info)

    def step(self, action):
        obs, env_reward, term, trunc, info = self.env.step(action)
        info = self._with_height(info)
        info["env_reward"] = float(env_reward)
        return obs, float(self.task.reward(info)), term, trunc, info


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
    :class:`~torchrl_rgm.generation.tasks.TaskRewardWrapper` to return the task's reward.

    ``kwargs`` go to ``gym.make`` (overriding a task's own ``env_kwargs``).
    """
    if name in TASKS:
        task = get_task(name)
        return TaskRewardWrapper(gym.make(env_id(task.env), **{**task.env_kwargs, **kwargs}), task)
    return gym.make(env_id(name), **kwargs)
