"""Rewards labelled from the expert's demonstration, then offline RL on them: the published methods for a large
unlabelled (or wrongly labelled) dataset plus one expert trajectory. They throw the given reward away.

- ``seabo_iql`` / ``seabo_td3bc``: SEABO (Lyu et al., ICLR 2024), each transition's reward from its nearest-neighbour
  distance to the expert's transitions (:func:`~torchrl_rgm.labelling.seabo_rewards`), then IQL / TD3+BC.
- ``otr_iql``: OTR (Luo et al., ICLR 2023), each episode aligned with the expert's by entropic optimal transport, each
  step's transport cost squashed into its reward (:func:`~torchrl_rgm.labelling.otr_rewards`), then IQL.

Labelling is a step of :meth:`training_set` (the rows the update samples), so the labelled rewards reach the same
buffers, budget and evaluation as every other algorithm's, and the offline-RL learners are the registry's own. As in
both papers' code, the labels are computed on raw observations and multiplied by ``1000 / (max − min episode
return)`` (IQL's MuJoCo scaling); absorbing self-loops get reward 0 (nothing follows the end of an episode).
"""
from __future__ import annotations

import time

import torch
from tensordict import TensorDictBase

from .. import labelling
from .base import AlgorithmError, _real_rows, check_positive, register
from .iql import IQL
from .td3bc import TD3BC

__all__ = ["SEABOIQL", "SEABOTD3BC", "OTRIQL"]

NEXT_REWARD = ("next", "reward")


class _Labelled:
    """Mixin: replaces the union's reward by labels from the expert's data (:meth:`label`) before training."""

    reads_reward = False

    def validate(self, algo) -> None:
        super().validate(algo)
        check_positive(algo, "label_alpha", "label_beta")

    def label(self, cfg, union: TensorDictBase, expert: TensorDictBase) -> torch.Tensor:
        """The labels of ``union``'s rows from ``expert``'s (both with raw observations, no absorbing rows)."""
        raise NotImplementedError

    def training_set(self, cfg, data, union: TensorDictBase, learner=None) -> TensorDictBase:
        """``union`` with its reward replaced by the labels (in place: the run's diagnostics read the same rows);
        the labelling's time, the labels' mean and std and the scale go to ``learner.info``."""
        union = super().training_set(cfg, data, union, learner=learner)
        real = _real_rows(union)
        start = time.perf_counter()
        labels = self.label(cfg, _raw(data, union[real]), _raw(data, data.expert.to_tensordict()[_real_rows(data.expert)]))
        scale = labelling.return_range_scale(labels, _episode(union[real]))
        reward = torch.zeros(union.shape[0], dtype=torch.float32)
        reward[real] = labels.reshape(-1).float() * scale
        union.set(NEXT_REWARD, reward.reshape(union.get(NEXT_REWARD).shape))
        if learner is not None:
            learner.info.update(label_s=time.perf_counter() - start, label_mean=float(labels.mean()),
                                label_std=float(labels.std()), label_scale=scale)
        return union

    def seen_reward(self, data, union):
        return union.get(NEXT_REWARD)


def _raw(data, td: TensorDictBase) -> TensorDictBase:
    """``td`` with its observations back in the environment's units (the absorbing indicator, if any, dropped)."""
    td, dim = td.clone(), data.obs_mean.shape[-1]
    for key in ("observation", ("next", "observation")):
        td.set(key, td.get(key)[..., :dim] * data.obs_std + data.obs_mean)
    return td


def _episode(td: TensorDictBase) -> torch.Tensor:
    """Each row's episode: (episode id, is_expert) — the expert's ids come from another dataset and may repeat D^O's."""
    episode = td.get("episode").reshape(-1).long() * 2
    if "is_expert" in td.keys():
        episode = episode + td.get("is_expert").reshape(-1).long()
    return episode


class _SEABO(_Labelled):
    def validate(self, algo) -> None:
        super().validate(algo)
        if not isinstance(algo.label_neighbours, int) or algo.label_neighbours < 1:
            raise AlgorithmError(f"algo.label_neighbours must be an integer ≥ 1, got {algo.label_neighbours}.")

    def label(self, cfg, union, expert):
        a = cfg.algo
        return labelling.seabo_rewards(union.get("observation"), union.get("action"), union.get(("next", "observation")),
                             expert.get("observation"), expert.get("action"), expert.get(("next", "observation")),
                             alpha=a.label_alpha, beta=a.label_beta, k=a.label_neighbours)


@register
class SEABOIQL(_SEABO, IQL):
    """SEABO's nearest-neighbour rewards, then IQL (the paper's main learner)."""

    name = "seabo_iql"


@register
class SEABOTD3BC(_SEABO, TD3BC):
    """SEABO's nearest-neighbour rewards, then TD3+BC."""

    name = "seabo_td3bc"


@register
class OTRIQL(_Labelled, IQL):
    """OTR's optimal-transport rewards, then IQL (the paper's learner)."""

    name = "otr_iql"

    def validate(self, algo) -> None:
        super().validate(algo)
        check_positive(algo, "label_epsilon")

    def label(self, cfg, union, expert):
        a = cfg.algo
        return labelling.otr_rewards(union.get("observation"), _episode(union), expert.get("observation"),
                                     alpha=a.label_alpha, beta=a.label_beta, epsilon=a.label_epsilon)
