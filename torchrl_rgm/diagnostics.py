"""What a trained run used: where the policy's weight went in the data, and whether Δr tracks the true reward.

Two per-run numbers the imperfect-reward study reports next to each score (``summary.json``):

- ``top_decile_weight_share``: the share of the policy-extraction weight that falls on the transitions of
  ``D^O``'s best episodes — the top tenth of its episodes by true return — next to
  ``top_decile_data_share``, the share those transitions have under uniform weights (what BC gives them).
  A method that found the good behaviour in the data puts far more than the data share there.
- ``spearman_correction_vs_true``: Spearman's rank correlation between ``Δr`` and the true reward on
  ``D^O`` alone (the expert's transitions and the absorbing self-loops left out): does the correction learn
  the reward the dataset should have had, or something else (``α log ρ`` plus shaping)?
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr
from tensordict import TensorDictBase

from .objectives.rgm import reward_correction

__all__ = ["dataset_rows", "top_decile_weight_share", "correction_rank_correlation", "transition_diagnostics"]


def dataset_rows(union: TensorDictBase) -> torch.Tensor:
    """Boolean mask of ``union``'s rows that are ``D^O``'s own transitions (not expert, not absorbing loops)."""
    n = union.shape[0]
    keep = torch.ones(n, dtype=torch.bool)
    for key in ("is_expert", "absorbing"):
        if key in union.keys():
            keep &= ~union.get(key).reshape(-1).bool()
    return keep


def top_decile_weight_share(union: TensorDictBase, weights: torch.Tensor, quantile: float = 0.9) -> dict:
    """Share of ``weights`` (one per row of ``union``) on the transitions of ``D^O``'s top-decile episodes.

    Episodes are ranked by their true return (``episode_return``, stored with every transition from the
    raw dataset, whatever reward the learner saw); ties at the threshold count as top. Returns
    ``{"top_decile_weight_share", "top_decile_data_share"}`` (the second: uniform weights).
    """
    rows = dataset_rows(union)
    episode = union.get("episode").reshape(-1)[rows]
    returns = union.get("episode_return").reshape(-1)[rows].double()
    w = weights.reshape(-1)[rows].double().clamp(min=0)
    ids, first = np.unique(episode.numpy(), return_index=True)
    threshold = np.quantile(returns.numpy()[first], quantile)
    top = returns >= threshold
    total = w.sum().item()
    return {"top_decile_weight_share": float(w[top].sum().item() / total) if total > 0 else float("nan"),
            "top_decile_data_share": float(top.double().mean().item())}


@torch.no_grad()
def correction_rank_correlation(correction, out_key, union: TensorDictBase, true_reward: torch.Tensor,
                                res_scale: float, device, n: int = 20000, seed: int = 0) -> float:
    """Spearman's ρ between ``Δr`` and ``true_reward`` (one per row of ``union``) on ``n`` random rows of ``D^O``."""
    rows = dataset_rows(union).nonzero().flatten()
    pick = rows[torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(seed))[:n]]
    batch = union[pick].to_tensordict().to(device)
    delta = reward_correction(correction, out_key, batch, res_scale).reshape(-1).float().cpu().numpy()
    truth = true_reward.reshape(-1)[pick].float().numpy()
    if np.ptp(delta) == 0 or np.ptp(truth) == 0:
        return float("nan")
    return float(spearmanr(delta, truth).statistic)


@torch.no_grad()
def transition_diagnostics(rgm_loss, union: TensorDictBase, initial_observation: torch.Tensor, device="cpu",
                           chunk: int = 65536) -> dict:
    """Per transition of ``union``, from a trained :class:`~torchrl_rgm.objectives.RGMLoss`
    (:meth:`~torchrl_rgm.objectives.RGMLoss.transition_values` in chunks): the corrected reward ``r + Δr``
    (learner's units; ``r`` without a correction network) and the visitation weight ``w = d^π/d^D``."""
    corrected, weight = [], []
    init = initial_observation.to(device)
    for start in range(0, union.shape[0], chunk):
        batch = union[start:start + chunk].to_tensordict().to(device)
        batch.set("initial_observation", init[torch.arange(batch.shape[0], device=device) % init.shape[0]])
        values = rgm_loss.transition_values(batch)
        corrected.append(values.get("corrected_reward").reshape(-1, 1).cpu())
        weight.append(values.get("visitation_weight").reshape(-1, 1).cpu())
    return {"corrected_reward": torch.cat(corrected), "visitation_weight": torch.cat(weight)}
