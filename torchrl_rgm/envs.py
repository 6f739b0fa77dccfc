"""Evaluation: the learner's policy on gymnasium MuJoCo environments, D4RL-normalised."""
from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from .generation.tasks import env_id, make_env

__all__ = ["env_id", "make_env", "make_policy_fn", "evaluate"]  # env_id, make_env: re-exported from generation.tasks


def make_policy_fn(actor, normalize_observation: Callable, device="cpu") -> Callable[[np.ndarray], np.ndarray]:
    """Raw observations ``[n, obs_dim]`` → deterministic actions ``[n, act_dim]`` in ``[-1, 1]``."""

    @torch.no_grad()
    def policy(obs: np.ndarray) -> np.ndarray:
        x = normalize_observation(torch.as_tensor(obs, dtype=torch.float32)).to(device)
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            out = actor(TensorDict(observation=x, batch_size=[x.shape[0]]))
        return out["action"].clamp(-1, 1).cpu().numpy()

    return policy


def evaluate(policy: Callable[[np.ndarray], np.ndarray], env_name: str | Callable[[], gym.Env], episodes: int = 10,
             num_envs: int = 5, seed: int = 0) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes, ``num_envs`` environments stepped together.

    ``env_name`` is a MuJoCo task name or a zero-argument factory of gymnasium environments
    (e.g. a robomimic task's :class:`~torchrl_rgm.data.robomimic.RobomimicEnv`).

    Episode ``k`` is reset with seed ``seed + k`` whatever the number of environments, so the
    returns do not depend on ``num_envs``.
    """
    factory = env_name if callable(env_name) else (lambda: make_env(env_name))
    envs = [factory() for _ in range(max(1, min(num_envs, episodes)))]
    returns = np.zeros(episodes)
    obs = [None] * len(envs)
    episode_of = [-1] * len(envs)
    next_episode = 0
    for i, env in enumerate(envs):
        if next_episode < episodes:
            obs[i], _ = env.reset(seed=seed + next_episode)
            episode_of[i] = next_episode
            next_episode += 1
    while any(k >= 0 for k in episode_of):
        active = [i for i, k in enumerate(episode_of) if k >= 0]
        actions = policy(np.stack([obs[i] for i in active]))
        for a, i in zip(actions, active):
            obs[i], reward, term, trunc, _ = envs[i].step(a)
            returns[episode_of[i]] += reward
            if term or trunc:
                if next_episode < episodes:
                    obs[i], _ = envs[i].reset(seed=seed + next_episode)
                    episode_of[i] = next_episode
                    next_episode += 1
                else:
                    episode_of[i] = -1
    for env in envs:
        env.close()
    return returns
