"""What a trained run used: where the policy's weight went in the data, and whether Δr tracks the true reward.

Two per-run numbers the imperfect-reward study reports next to each score (``summary.json``):

- ``top_decile_weight_share``: the share of the policy-extraction weight that falls on the transitions of
  ``D^O``'s best episodes — the top tenth of its episodes by true return — next to
  ``top_decile_data_share``, the share those transitions have under uniform weights (what BC gives them).
  A method that found the good behaviour in the data puts far more than the data share there.
- ``expert_weight_share`` (next to ``expert_data_share``) and ``weight_ess_fraction``: the share of the extraction
  weight on the expert's own transitions in the union, and the weights' effective sample size over the union's size
  (1 = uniform). RGM's objective promises ``w d^D -> d^E`` where the reward does not help: a share near 1.
- ``start_weight_share`` (next to ``start_data_share``): the share of the extraction weight on ``D^O``'s first
  ``START_STEPS`` steps of each episode. A DICE lower level's ``w d^D`` is a visitation that flows from ``mu0``
  (the union's episode starts), so it must give every start row ``w >= (1 - gamma) mu0 / d^D`` — weight that the
  expert's ratio ``ρ`` does not give (:func:`start_weight_share`; docs/results.md, "Where the DICE weights go").
- ``correction_*`` (RGM): how far Δr is from what the upper level asks for with V held fixed
  (:func:`correction_gap_diagnostics`); ``discriminator_*``: how well ``log ρ`` separates the expert
  (:func:`discriminator_calibration`).
- ``demonstration_action_error`` (every algorithm, at each evaluation): the squared distance between the policy's
  action and the demonstration's on the demonstration's own states, each trajectory's step ``t`` weighted
  ``γ^t`` (:func:`demonstration_action_error`). Computed from the data alone, it is what a user without a simulator
  can choose a checkpoint by (the recipe keeps the evaluation where it is smallest: ``selected_*`` in the summary).
- ``spearman_correction_vs_true``: Spearman's rank correlation between ``Δr`` and the true reward on
  ``D^O`` alone (the expert's transitions and the absorbing self-loops left out): does the correction learn
  the reward the dataset should have had, or something else (``α log ρ`` plus shaping)?
"""
from __future__ import annotations

import math

import numpy as np
import torch
from tensordict import TensorDictBase

from .objectives.rgm import reward_correction

__all__ = ["dataset_rows", "top_decile_weight_share", "correction_rank_correlation", "transition_diagnostics",
           "expert_weight_share", "start_weight_share", "START_STEPS", "correction_gap_diagnostics",
           "discriminator_calibration", "demonstration_action_error"]

#: Steps from an episode's start that :func:`start_weight_share` counts.
START_STEPS = 10


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
    """Spearman's ρ between ``Δr`` and ``true_reward`` (one per row of ``union``) on ``n`` random rows of ``D^O``.

    ``correction``: the correction network (``Δr = res_scale tanh(net)``, ``out_key`` its output), or an
    :class:`~torchrl_rgm.objectives.RGMLoss` (its :meth:`~torchrl_rgm.objectives.RGMLoss.reward_correction_values`,
    an anchor included; ``out_key`` and ``res_scale`` unused)."""
    rows = dataset_rows(union).nonzero().flatten()
    pick = rows[torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(seed))[:n]]
    batch = union[pick].to_tensordict().to(device)
    if hasattr(correction, "reward_correction_values"):
        delta = correction.reward_correction_values(batch)
    else:
        delta = reward_correction(correction, out_key, batch, res_scale)
    delta = delta.reshape(-1).float().cpu().numpy()
    truth = true_reward.reshape(-1)[pick].float().numpy()
    if np.ptp(delta) == 0 or np.ptp(truth) == 0:
        return float("nan")
    from scipy.stats import spearmanr  # ~0.3 s: imported where it is used, not at every recipe's start

    return float(spearmanr(delta, truth).statistic)


@torch.no_grad()
def transition_diagnostics(rgm_loss, union: TensorDictBase, initial_observation: torch.Tensor, device="cpu",
                           chunk: int = 65536) -> dict:
    """Per transition of ``union``, from a trained :class:`~torchrl_rgm.objectives.RGMLoss`
    (:meth:`~torchrl_rgm.objectives.RGMLoss.transition_values` in chunks): the corrected reward ``r + Δr``
    (learner's units; ``r`` without a correction network) and the visitation weight ``w = d^π/d^D``."""
    key = rgm_loss.tensor_keys.log_density_ratio
    if getattr(rgm_loss, "correction_anchor", False) and key not in union.keys(include_nested=True):
        raise ValueError(f"This RGMLoss anchors its correction at the discriminator's ratio, and the union has no "
                         f"{key!r}: pass the union as the update saw it, "
                         f"algorithm.prepare_union(cfg, learner, union, device, expert=data.expert).")
    corrected, weight = [], []
    init = initial_observation.to(device)
    for start in range(0, union.shape[0], chunk):
        batch = union[start:start + chunk].to_tensordict().to(device)
        batch.set("initial_observation", init[torch.arange(batch.shape[0], device=device) % init.shape[0]])
        values = rgm_loss.transition_values(batch)
        corrected.append(values.get("corrected_reward").reshape(-1, 1).cpu())
        weight.append(values.get("visitation_weight").reshape(-1, 1).cpu())
    return {"corrected_reward": torch.cat(corrected), "visitation_weight": torch.cat(weight)}


def expert_weight_share(union: TensorDictBase, weights: torch.Tensor) -> dict:
    """``{"expert_weight_share", "expert_data_share", "weight_ess_fraction"}`` of per-row ``weights`` on ``union``
    (absorbing self-loops left out): the weight on ``is_expert`` rows over the total, those rows' share of the
    rows, and Kish's effective sample size ``(Σw)² / Σw²`` over the number of rows."""
    keep = torch.ones(union.shape[0], dtype=torch.bool)
    if "absorbing" in union.keys():
        keep &= ~union.get("absorbing").reshape(-1).bool()
    w = weights.reshape(-1)[keep].double().clamp(min=0)
    expert = (union.get("is_expert").reshape(-1)[keep].bool() if "is_expert" in union.keys()
              else torch.zeros(w.numel(), dtype=torch.bool))
    total = w.sum().item()
    return {"expert_weight_share": float(w[expert].sum().item() / total) if total > 0 else float("nan"),
            "expert_data_share": float(expert.double().mean().item()),
            "weight_ess_fraction": float(total ** 2 / (w.pow(2).sum().item() * w.numel())) if total > 0 else float("nan")}


def start_weight_share(union: TensorDictBase, weights: torch.Tensor, steps: int = START_STEPS) -> dict:
    """``{"start_weight_share", "start_data_share"}``: the share of per-row ``weights`` on ``D^O``'s rows whose
    ``step`` (in their episode) is below ``steps``, and those rows' share of the rows; the expert's rows and the
    absorbing self-loops left out of the rows counted as starts, absorbing self-loops out of the total (as in
    :func:`expert_weight_share`). ``nan`` where the union has no ``step`` entry."""
    if "step" not in union.keys():
        return {"start_weight_share": float("nan"), "start_data_share": float("nan")}
    keep = torch.ones(union.shape[0], dtype=torch.bool)
    if "absorbing" in union.keys():
        keep &= ~union.get("absorbing").reshape(-1).bool()
    w = weights.reshape(-1)[keep].double().clamp(min=0)
    start = union.get("step").reshape(-1)[keep] < steps
    if "is_expert" in union.keys():
        start &= ~union.get("is_expert").reshape(-1)[keep].bool()
    total = w.sum().item()
    return {"start_weight_share": float(w[start].sum().item() / total) if total > 0 else float("nan"),
            "start_data_share": float(start.double().mean().item())}


@torch.no_grad()
def correction_gap_diagnostics(rgm_loss, union: TensorDictBase, initial_observation: torch.Tensor, device="cpu",
                               n: int = 50000, seed: int = 0) -> dict:
    r"""How Δr compares with the upper level's optimum on ``n`` random rows of ``union`` (absorbing loops left out).

    With ``V`` held fixed and Δr unbounded, the upper level is minimised where the corrected reward is
    :math:`\alpha(\log\rho + 1) + V(s) - \gamma(1-d)V(s') + c` (``shared/METHOD.md``; ``c`` is free when the upper
    level compares batch-normalised weights), i.e. at the target :math:`t = \alpha(\log\rho + 1) + V(s) -
    \gamma(1-d)V(s') - \tilde r`. Centred on its median (the most favourable ``c``), ``t`` tells which limit binds:

    - ``correction_abs_over_bound``: mean :math:`|\Delta r|` / ``res_scale``; ``correction_saturated``: share
      of rows with :math:`|\Delta r| > 0.9\,` ``res_scale`` (the bound binds there);
    - ``correction_target_outside_bound``: share of rows whose centred target lies beyond ``res_scale`` (the bound
      forbids the optimum there, however long Δr trains);
    - ``correction_target_corr``: Pearson correlation of Δr with the target (≈ 1: Δr moves towards the optimum;
      ≈ 0: it has not got there — a rate, or a budget, problem);
    - ``correction_gap``: mean :math:`|\Delta r - \mathrm{clip}(t - \mathrm{med}\,t)|` / ``res_scale``.
    """
    loss = rgm_loss
    if loss.reward_correction_network is None or "log_density_ratio" not in union.keys():
        return {}
    rows = torch.arange(union.shape[0])
    if "absorbing" in union.keys():
        rows = rows[~union.get("absorbing").reshape(-1).bool()]
    pick = rows[torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(seed))[:n]]
    batch = union[pick].to_tensordict().to(device)
    init = initial_observation.to(device)
    batch.set("initial_observation", init[torch.arange(batch.shape[0], device=device) % init.shape[0]])
    x = loss._lower_level(batch)
    log_rho = batch.get("log_density_ratio").reshape(-1, 1).to(x["v"].dtype)
    if loss.log_ratio_clip is not None:
        log_rho = log_rho.clamp(-loss.log_ratio_clip, loss.log_ratio_clip)
    target = loss.alpha * (log_rho + 1) + x["v"] - loss.gamma * (1 - x["done"]) * x["v_next"] - x["reward"]
    # the bound holds on Δr's learnt part, around its anchor (0, or the closed form with correction_anchor)
    target = target - x["anchor"]
    target = (target - target.median()).reshape(-1).double().cpu()
    delta = (x["delta_r"] - x["anchor"]).reshape(-1).double().cpu()
    bound = max(float(loss.res_scale), 1e-12)
    corr = torch.corrcoef(torch.stack([delta, target]))[0, 1].item() if delta.std() > 0 else float("nan")
    return {"correction_abs_over_bound": float(delta.abs().mean() / bound),
            "correction_saturated": float((delta.abs() > 0.9 * bound).double().mean()),
            "correction_target_outside_bound": float((target.abs() > bound).double().mean()),
            "correction_target_corr": float(corr),
            "correction_gap": float((delta - target.clamp(-bound, bound)).abs().mean() / bound)}


def discriminator_calibration(union: TensorDictBase) -> dict:
    """``log ρ`` on the union's expert rows against ``D^O``'s (absorbing loops left out): ``discriminator_auc`` (the
    chance an expert row's ``log ρ`` exceeds a ``D^O`` row's) and ``discriminator_expert_rho``, the mean ``ρ`` on
    expert rows over the value an exact ratio gives them (``N / N_E`` with ``E_D[ρ] = 1``): 1 = calibrated,
    below 1 = under-confident."""
    if "log_density_ratio" not in union.keys() or "is_expert" not in union.keys():
        return {}
    keep = torch.ones(union.shape[0], dtype=torch.bool)
    if "absorbing" in union.keys():
        keep &= ~union.get("absorbing").reshape(-1).bool()
    log_rho = union.get("log_density_ratio").reshape(-1)[keep].double()
    expert = union.get("is_expert").reshape(-1)[keep].bool()
    if not expert.any() or expert.all():
        return {}
    ranks = torch.from_numpy(np.argsort(np.argsort(log_rho.numpy(), kind="stable"), kind="stable")).double() + 1
    n_e, n_o = int(expert.sum()), int((~expert).sum())
    auc = (ranks[expert].sum().item() - n_e * (n_e + 1) / 2) / (n_e * n_o)
    rho = (log_rho - (torch.logsumexp(log_rho, 0) - math.log(log_rho.numel()))).exp()
    return {"discriminator_auc": float(auc),
            "discriminator_expert_rho": float(rho[expert].mean().item() / (log_rho.numel() / n_e))}


@torch.no_grad()
def demonstration_action_error(policy, expert: TensorDictBase, gamma: float | None = 0.99) -> float:
    r"""How far ``policy``'s actions are from the demonstration's on its own states:
    :math:`\sum_t \gamma^t \lVert \pi(s_t) - a^E_t\rVert^2 / \sum_t \gamma^t` over every real step of ``expert``
    (absorbing self-loops left out), ``t`` the step within its trajectory (``gamma=None``: uniform weights).

    ``policy`` maps a batch of learner observations (as stored in ``expert``) to actions; for a stochastic actor,
    its deterministic (mean) action — what the evaluation runs. The discount puts the weight where a rollout from
    the expert's start depends on it most: a policy that errs on the first steps leaves the expert's states at once
    (docs/results.md, "Where the late fall comes from"), however well it fits the rest.
    """
    keep = torch.ones(expert.shape[0], dtype=torch.bool)
    if "absorbing" in expert.keys():
        keep &= ~expert.get("absorbing").reshape(-1).bool()
    if not keep.any():
        raise ValueError("the demonstration has no real steps to compare the policy's actions with.")
    obs, action = expert.get("observation")[keep], expert.get("action")[keep]
    error = (torch.as_tensor(policy(obs), dtype=torch.float64) - action.double()).pow(2).sum(-1).reshape(-1)
    if gamma is None:
        return float(error.mean())
    step = expert.get("step")[keep].reshape(-1).double()
    weight = torch.as_tensor(gamma, dtype=torch.float64).pow(step)
    return float((weight * error).sum() / weight.sum())
