"""Imperfect-reward settings as transforms of ``("next", "reward")``.

Each transform is a TorchRL :class:`~torchrl.envs.Transform`, so it works on a raw transitions
TensorDict (``transform(td)``) and on a replay buffer (``buffer.append_transform(transform)``,
applied at sampling). Randomness is keyed on each transition's ``transition_id`` with a
counter-based hash, not on the order of calls: a transition's corrupted reward is the same
whether it is transformed in the whole dataset or in a sampled batch, and the same for the
same seed on any machine.

========== ==========================================================================
name       what the learner sees
========== ==========================================================================
true       the environment's reward
partial    each transition's reward sign-flipped independently with probability ``p``
negated    ``-r`` everywhere ("completely incorrect")
zero       ``0`` everywhere (offline imitation: RGM then behaves like SMODICE)
sparse     ``1`` on the last transition of each episode whose return reaches
           ``threshold`` (default: the dataset's 90th percentile of episode returns
           when the loader builds it), ``0`` elsewhere — the locomotion analogue of
           robomimic's success reward
noisy      ``r + sigma * eps``, ``eps ~ N(0, 1)``
other_task the reward of another task on the same transitions: running backward,
           ``-reward_forward + reward_ctrl (+ reward_survive)`` from the per-step infos
========== ==========================================================================
"""
from __future__ import annotations

import math

import numpy as np
import torch
from tensordict import TensorDictBase
from torchrl.envs import Compose, Transform

__all__ = [
    "REWARD_SETTINGS",
    "RewardTransform",
    "TrueReward",
    "PartialReward",
    "NegatedReward",
    "ZeroReward",
    "SparseReward",
    "NoisyReward",
    "OtherTaskReward",
    "make_reward_transform",
    "hashed_uniform",
]

REWARD = ("next", "reward")


def hashed_uniform(ids: torch.Tensor, seed: int, stream: int = 0) -> torch.Tensor:
    """Uniform [0, 1) numbers that depend only on ``(seed, stream, id)`` (splitmix64)."""
    with np.errstate(over="ignore"):
        x = ids.detach().cpu().numpy().astype(np.uint64)
        x = x + np.uint64((seed * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9) % (1 << 64))
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    u = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return torch.as_tensor(u, device=ids.device)


class RewardTransform(Transform):
    """Base class: rewrites ``("next", "reward")`` from the transition's other fields."""

    name = ""

    def __init__(self):
        super().__init__(in_keys=[REWARD], out_keys=[REWARD])

    def corrupt(self, tensordict: TensorDictBase, reward: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        reward = tensordict.get(REWARD)
        tensordict.set(REWARD, self.corrupt(tensordict, reward).to(reward.dtype))
        return tensordict

    _call = forward

    def _ids(self, tensordict: TensorDictBase) -> torch.Tensor:
        ids = tensordict.get("transition_id", None)
        if ids is None:
            raise KeyError(
                f"The {self.name!r} reward needs each transition's 'transition_id' (written by "
                "torchrl_rgm.data.load_transitions) to draw its fixed random numbers."
            )
        return ids

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if k in ("p", "seed", "sigma", "threshold"))
        return f"{type(self).__name__}({args})"


class TrueReward(RewardTransform):
    """The environment's reward, unchanged (``true``)."""

    name = "true"

    def corrupt(self, tensordict, reward):
        return reward


class NegatedReward(RewardTransform):
    """:math:`-r` everywhere (``negated``: a completely incorrect reward)."""

    name = "negated"

    def corrupt(self, tensordict, reward):
        return -reward


class ZeroReward(RewardTransform):
    """:math:`0` everywhere (``zero``: offline imitation, RGM then behaves like SMODICE)."""

    name = "zero"

    def corrupt(self, tensordict, reward):
        return torch.zeros_like(reward)


class PartialReward(RewardTransform):
    """Each transition's reward sign-flipped independently with probability ``p`` (``partial``).

    Which transitions flip is fixed by their ``transition_id`` and ``seed``.
    """

    name = "partial"

    def __init__(self, p: float = 0.5, seed: int = 0):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"partial reward: p must lie in [0, 1], got {p}.")
        self.p, self.seed = float(p), int(seed)

    def corrupt(self, tensordict, reward):
        flip = hashed_uniform(self._ids(tensordict), self.seed).view(reward.shape) < self.p
        return torch.where(flip.to(reward.device), -reward, reward)


class NoisyReward(RewardTransform):
    """:math:`r + \\sigma \\epsilon` with :math:`\\epsilon \\sim \\mathcal{N}(0, 1)` (``noisy``).

    Each transition's :math:`\\epsilon` is fixed by its ``transition_id`` and ``seed``.
    """

    name = "noisy"

    def __init__(self, sigma: float = 1.0, seed: int = 0):
        super().__init__()
        if not (sigma >= 0 and math.isfinite(sigma)):
            raise ValueError(f"noisy reward: sigma must be a finite number ≥ 0, got {sigma}.")
        self.sigma, self.seed = float(sigma), int(seed)

    def corrupt(self, tensordict, reward):
        ids = self._ids(tensordict)
        u1 = hashed_uniform(ids, self.seed, 1).clamp(min=1e-12)
        u2 = hashed_uniform(ids, self.seed, 2)
        eps = torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)  # Box-Muller
        return reward + self.sigma * eps.view(reward.shape).to(reward)


class SparseReward(RewardTransform):
    """1 on the last transition of each episode whose return reaches ``threshold``, 0 elsewhere (``sparse``).

    Needs ``episode_return`` and ``("next", "last")`` per transition (the loaders write them).
    """

    name = "sparse"

    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = float(threshold)

    def corrupt(self, tensordict, reward):
        episode_return = tensordict.get("episode_return", None)
        last = tensordict.get(("next", "last"), None)
        if episode_return is None or last is None:
            raise KeyError("The 'sparse' reward needs 'episode_return' and ('next', 'last') per transition.")
        success = (episode_return.view(reward.shape) >= self.threshold) & last.view(reward.shape).bool()
        return success.to(reward.dtype)


class OtherTaskReward(RewardTransform):
    """Running backward on the same dynamics: ``-reward_forward + reward_ctrl (+ reward_survive)``."""

    name = "other_task"

    def corrupt(self, tensordict, reward):
        info = tensordict.get(("next", "info"), None)
        if info is None or "reward_forward" not in info.keys() or "reward_ctrl" not in info.keys():
            raise KeyError(
                "The 'other_task' reward needs the per-step infos reward_forward and reward_ctrl "
                "(datasets built by torchrl_rgm.generation.build store them)."
            )
        other = -info.get("reward_forward") + info.get("reward_ctrl")
        if "reward_survive" in info.keys():
            other = other + info.get("reward_survive")
        return other.view(reward.shape)


#: The reward settings by name (``cls.name`` → class), as :func:`make_reward_transform` accepts them.
REWARD_SETTINGS = {
    cls.name: cls
    for cls in (TrueReward, PartialReward, NegatedReward, ZeroReward, SparseReward, NoisyReward, OtherTaskReward)
}


def make_reward_transform(setting: str | RewardTransform | list, **kwargs) -> Transform:
    """A transform from its name (``kwargs`` go to its constructor) or a list of them (composed)."""
    if isinstance(setting, Transform):
        return setting
    if isinstance(setting, (list, tuple)):
        return Compose(*(make_reward_transform(s) for s in setting))
    try:
        cls = REWARD_SETTINGS[setting]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown reward setting {setting!r}; accepted values are {sorted(REWARD_SETTINGS)}."
        ) from None
    return cls(**kwargs)
