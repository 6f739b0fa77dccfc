"""The pipeline every data source shares, from raw transitions to what RGM trains on (:class:`RGMData`):
episode selection, finiteness checks, timeouts dropped, the union's statistics applied to both sets
(observations z-scored, the reward scaled), absorbing states. :mod:`~torchrl_rgm.data.minari` (Minari and
robomimic files) and :mod:`~torchrl_rgm.data.sharing` (other tasks' datasets) both end here."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data import TensorDictReplayBuffer, TensorStorage
from torchrl.data.replay_buffers import RandomSampler

from .._keys import NEXT_OBS, OBS, REWARD
from .absorbing import add_absorbing_states, with_indicator

__all__ = ["RGMData", "DatasetError", "REWARD_SCALINGS", "EXPERT_UNION_REWARDS", "check_finite", "select_episodes",
           "drop_timeouts", "finish_union"]

#: The accepted ``reward_scaling`` values of :func:`load_rgm_data`.
REWARD_SCALINGS = ("zscore", "scale", "none")
#: The reward expert transitions get where they are added to the union: the reward setting's, or 0 (the authors').
EXPERT_UNION_REWARDS = ("given", "zero")


class DatasetError(ValueError):
    """A dataset RGM cannot use: non-flat observations, no or too few episodes, NaN/inf values, mismatched shapes."""


@dataclass
class RGMData:
    """What RGM trains on. Observations carry the absorbing indicator as their last dimension."""

    union: TensorDict
    expert: TensorDict
    initial_observation: torch.Tensor
    obs_mean: torch.Tensor
    obs_std: torch.Tensor
    reward_mean: float
    reward_std: float
    union_id: str
    expert_id: str
    env_spec: str | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    info: dict = field(default_factory=dict)

    @property
    def obs_dim(self) -> int:
        return self.union.get(OBS).shape[-1]

    @property
    def action_dim(self) -> int:
        return self.union.get("action").shape[-1]

    def normalize_observation(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw environment observations → the learner's input (z-scored, indicator 0)."""
        obs = torch.as_tensor(obs, dtype=torch.float32)
        return with_indicator((obs - self.obs_mean) / self.obs_std)

    def normalized_score(self, returns):
        """D4RL normalisation: 100 (return − random) / (expert − random)."""
        if self.ref_min_score is None or self.ref_max_score is None:
            raise ValueError(f"{self.union_id} has no ref_min_score/ref_max_score to normalise with.")
        return 100.0 * (np.asarray(returns) - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)

    def replay_buffer(self, which: str = "union", batch_size: int = 512) -> TensorDictReplayBuffer:
        """A TorchRL replay buffer over ``union``, ``expert`` (no copy of the data)."""
        td = getattr(self, which)
        return TensorDictReplayBuffer(storage=TensorStorage(td), sampler=RandomSampler(), batch_size=batch_size)


def check_finite(td: TensorDict, name: str, keys=(OBS, "action", NEXT_OBS, REWARD), source: str = "") -> None:
    """One clear error if any of ``keys`` (default: observations, actions, rewards) of ``td`` is NaN or infinite;
    ``source`` says where a computed entry came from (e.g. the per-step infos a reward setting reads)."""
    for key in keys:
        value = td.get(key)
        bad = ~torch.isfinite(value)
        if bad.any():
            rows = bad.reshape(bad.shape[0], -1).any(-1).nonzero().flatten()
            raise DatasetError(
                f"{name}: {int(rows.numel())} transitions have NaN/inf in {key!r}{source} "
                f"(first at transitions {rows[:5].tolist()}); clean the dataset or rebuild it."
            )


def select_episodes(td: TensorDict, n: int, dataset_id: str) -> TensorDict:
    """The first ``n`` episodes of ``td`` (the expert trajectories RGM is given)."""
    episodes = torch.unique(td.get("episode"), sorted=True)
    if n < 1:
        raise ValueError(f"n_expert_trajectories must be ≥ 1, got {n}.")
    if n > episodes.numel():
        raise DatasetError(
            f"Asked for {n} expert trajectories but {dataset_id} holds only {episodes.numel()} episodes."
        )
    return td[torch.isin(td.get("episode"), episodes[:n])]


def drop_timeouts(td: TensorDict) -> TensorDict:
    """``td`` without its timeout transitions, and ``("next", "done")`` set to ``terminated``.

    Timeouts are not terminals: their transitions go (their ``s'`` is not a real successor).
    """
    timeout = td.get(("next", "truncated")).reshape(-1) & ~td.get(("next", "terminated")).reshape(-1)
    td = td[~timeout]
    td.set(("next", "done"), td.get(("next", "terminated")).clone())
    return td


def finish_union(union: TensorDict, expert: TensorDict, *, standardize: bool, reward_scaling: str, absorbing: bool,
                 terminal_absorbing_loop: bool, terminal_done: bool = False):
    """Initial observations, timeouts dropped, statistics of the union applied to both sets, absorbing states.

    Returns ``(union, expert, initial_observation, (obs_mean, obs_std, reward_mean, reward_std))``.
    """
    initial = union[union.get("step") == 0].get(OBS)
    union, expert = drop_timeouts(union), drop_timeouts(expert)
    obs = union.get(OBS)
    if standardize:
        obs_mean, obs_std = obs.mean(0), obs.std(0).clamp(min=1e-3)
    else:
        obs_mean, obs_std = torch.zeros(obs.shape[-1]), torch.ones(obs.shape[-1])
    reward_mean, reward_std = 0.0, 1.0
    if standardize and reward_scaling != "none":
        r = union.get(REWARD)
        reward_std = r.std().item()
        reward_std = reward_std if reward_std > 1e-6 else 1.0
        if reward_scaling == "zscore":
            reward_mean = r.mean().item()
    for td in (union, expert):
        td.set(OBS, (td.get(OBS) - obs_mean) / obs_std)
        td.set(NEXT_OBS, (td.get(NEXT_OBS) - obs_mean) / obs_std)
        td.set(REWARD, (td.get(REWARD) - reward_mean) / reward_std)
    initial = (initial - obs_mean) / obs_std
    if absorbing:
        union = add_absorbing_states(union, terminal_loop=terminal_absorbing_loop, terminal_done=terminal_done)
        expert = add_absorbing_states(expert, terminal_loop=terminal_absorbing_loop, terminal_done=terminal_done)
        initial = with_indicator(initial)
    return union, expert, initial, (obs_mean, obs_std, reward_mean, reward_std)
