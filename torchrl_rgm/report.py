"""Run reports: summary.json with the run's diagnostics, learning curve, reward-correction and per-source plots."""
from __future__ import annotations

import json
import math
import resource
from pathlib import Path

import numpy as np
import torch

from .algorithms import Algorithm, Learner
from .atomic import atomic_path
from .config import cpu_description, domain, run_name
from .data.sharing import TARGET_REWARD, per_source_means
from .diagnostics import (correction_gap_diagnostics, correction_rank_correlation, discriminator_calibration,
                          expert_weight_share, start_weight_share, top_decile_weight_share,
                          transition_diagnostics)
from .train import save_checkpoint

__all__ = ["write_json", "save_figure", "plot_learning_curve", "plot_per_source", "plot_reward_correction",
           "rank_correlations", "evaluation_record", "report", "format_summary", "run_diagnostics",
           "source_diagnostics", "peak_memory_mb", "dataset_score"]


def write_json(payload: dict, path) -> None:
    """Strict JSON (a NaN or infinite number is written as ``null``), atomically (:func:`~torchrl_rgm.atomic.atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_strict(payload), indent=2, allow_nan=False))


def _strict(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict(v) for v in x]
    return x


def _pyplot():
    """matplotlib's pyplot on the Agg backend, imported where a figure is drawn (not at every recipe's start)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    """Atomic (:func:`~torchrl_rgm.atomic.atomic_path`); closes the figure."""
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        _pyplot().close(fig)


def plot_learning_curve(history: list[dict], expert: float | None, union: float | None, path, title: str) -> None:
    """Save the normalised score (mean ± std) of each evaluation in ``history`` to ``path``.

    ``expert`` and ``union``, when given, are the datasets' own normalised scores, drawn as
    horizontal reference lines.
    """
    fig, ax = _pyplot().subplots(figsize=(6.4, 4))
    steps = [h["step"] for h in history]
    mean = np.array([h["normalized_score"] for h in history])
    std = np.array([h["normalized_score_std"] for h in history])
    ax.plot(steps, mean, marker="o", label="RGM (deterministic policy)")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    if expert is not None:
        ax.axhline(expert, color="tab:green", ls="--", label=f"expert data ({expert:.1f})")
    if union is not None:
        ax.axhline(union, color="tab:red", ls=":", label=f"union data ({union:.1f})")
    ax.set_xlabel("update")
    ax.set_ylabel("normalised score")
    ax.set_title(title)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def rank_correlations(true_reward, seen_reward, corrected_reward) -> dict:
    """Spearman rank correlations with the true reward of the seen and of the corrected reward.

    Returns ``{"spearman_seen_vs_true": ..., "spearman_corrected_vs_true": ...}``; ranks, so that
    the rewards' scales and offsets do not matter.
    """
    from scipy.stats import spearmanr  # scipy.stats: ~0.3 s, imported where a run reports, not at its start

    return {
        "spearman_seen_vs_true": float(spearmanr(seen_reward, true_reward).statistic),
        "spearman_corrected_vs_true": float(spearmanr(corrected_reward, true_reward).statistic),
    }


def plot_reward_correction(true_reward, seen_reward, corrected_reward, path, title: str) -> dict:
    """Save scatter plots of the seen and of the corrected reward against the true one to ``path``.

    Returns :func:`rank_correlations` of the three rewards (also shown in the panels' titles).
    """
    corr = rank_correlations(true_reward, seen_reward, corrected_reward)
    fig, axes = _pyplot().subplots(1, 2, figsize=(9, 4), sharex=True)
    for ax, y, name, key in (
        (axes[0], seen_reward, "reward seen by the learner", "spearman_seen_vs_true"),
        (axes[1], corrected_reward, "after correction (r~ + Δr)", "spearman_corrected_vs_true"),
    ):
        ax.scatter(true_reward, y, s=3, alpha=0.3)
        ax.set_title(f"{name}\nSpearman ρ = {corr[key]:.3f}")
        ax.set_xlabel("true reward (standardised)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("reward (standardised)")
    fig.suptitle(title, y=1.08)
    save_figure(fig, path)
    return corr


def plot_per_source(per_source: dict, path, title: str) -> None:
    """Data sharing: per source dataset, the mean reward seen / corrected / of the target task, and
    the mean visitation weight (relative to the union's mean) where the algorithm has one."""
    names = list(per_source)
    x = np.arange(len(names))
    has_weight = any("visitation_weight" in v for v in per_source.values())
    fig, axes = _pyplot().subplots(1, 2 if has_weight else 1, figsize=(11 if has_weight else 6, 4.2), squeeze=False)
    ax = axes[0, 0]
    series = [(k, label) for k, label in (("reward_seen", "seen by the learner"), ("corrected_reward", "corrected (r + Δr)"),
                                          ("target_reward", "target task's true reward"))
              if any(k in v for v in per_source.values())]
    width = 0.8 / len(series)
    for i, (key, label) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, [per_source[n].get(key, np.nan) for n in names], width, label=label)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("mean reward per step")
    ax.set_title("reward per source")
    ax.legend(loc="best", fontsize=8)
    if has_weight:
        ax = axes[0, 1]
        ax.bar(x, [per_source[n].get("visitation_weight", np.nan) for n in names], color="tab:purple")
        ax.axhline(1, color="k", lw=0.6, ls="--")
        ax.set_ylabel("mean w / union mean")
        ax.set_yscale("log")
        ax.set_title("visitation weight d^π/d^D per source")
    for ax in axes[0]:
        # the family's env name is in the title: "halfcheetah-jump/medium-replay" → "jump/medium-replay"
        labels = [n.split("-", 1)[1] if "-" in n.split("/")[0] else n for n in names]
        ax.set_xticks(x, [n.replace(" (", "\n(") for n in labels], fontsize=7, rotation=25, ha="right")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title, y=1.02)
    save_figure(fig, path)


def evaluation_record(step: int, returns: np.ndarray, data, metrics: dict) -> dict:
    """One evaluation's line of the history: returns, normalised score (success rate in % for 0/1 returns), and
    the update's last metrics."""
    scores = data.normalized_score(returns)
    return {"step": step, "return": float(returns.mean()), "normalized_score": float(scores.mean()),
            "normalized_score_std": float(scores.std()), **metrics}


def dataset_score(data, td) -> float:
    """Mean normalised return of the episodes in ``td`` (true rewards, from the raw dataset; with shared
    data, the target task's)."""
    first = td.get("step") == 0
    if "absorbing" in td.keys():
        first = first & ~td.get("absorbing").squeeze(-1)
    key = "target_episode_return" if "target_episode_return" in td.keys() else "episode_return"
    returns = td[first].get(key).numpy()
    return float(np.mean(data.normalized_score(returns)))


def report(cfg, source, data, algorithm: Algorithm, learner: Learner, union, history: list[dict], elapsed: float,
           updates_per_s: float, run_dir: Path, device, extra: dict | None = None) -> dict:
    """Write summary.json (scores, timing, :func:`run_diagnostics`, per-source means with shared data, ``extra``),
    the plots and the final policy; return the summary. ``updates_per_s`` excludes evaluation time."""
    union_score = dataset_score(data, data.union[~data.union["is_expert"].squeeze(-1)])
    expert_score = dataset_score(data, data.expert)
    final = history[-1] if history else {}
    title = f"{run_name(cfg)}, {cfg.dataset.n_expert_trajectories} expert traj."
    plot_learning_curve(history, expert_score, union_score, run_dir / "learning_curve.png", title)
    corr = {}
    if learner.correction is not None:
        true_reward = _true_reward(source, data)  # loaded once: the figure and the diagnostics both read it
        corr = _reward_correction_figure(true_reward, union, learner, run_dir, title, device)
    save_checkpoint({"actor": learner.actor.state_dict(), "obs_mean": data.obs_mean, "obs_std": data.obs_std},
                    run_dir / "policy.pt")
    scores = [h["normalized_score"] for h in history]
    per_source = source_diagnostics(algorithm, data, learner, union, device) if "source" in union.keys() else None
    diagnostics = run_diagnostics(cfg, source, algorithm, data, learner, union, device,
                                  true_reward if learner.correction is not None else None)
    summary = {
        "final_normalized_score": final.get("normalized_score"),
        "final_normalized_score_std": final.get("normalized_score_std"),
        "best_normalized_score": float(max(scores)) if scores else None,
        "union_normalized_score": union_score,
        "expert_normalized_score": expert_score,
        "wall_time_s": elapsed,
        "updates_per_s": updates_per_s,
        "updates": final.get("step"),
        # what the update ran in (precision=auto resolves per machine; only RGM/SMODICE's update uses bf16)
        "precision": "bfloat16" if getattr(learner.update, "autocast_dtype", None) == torch.bfloat16 else "float32",
        "torch_threads": torch.get_num_threads(),  # what training ran with (OMP_NUM_THREADS, else every core)
        "cpu": cpu_description(),
        "run_dir": str(run_dir),
        "peak_memory_mb": peak_memory_mb(device),
        **(extra or {}),
        **corr,
        **{k: (v if v is None or math.isfinite(v) else None) for k, v in diagnostics.items()},
    }
    if per_source:
        summary["per_source"] = per_source
        plot_per_source(per_source, run_dir / "sources.png", title)
    if domain(cfg) == "robomimic":  # the normalised score is the success rate in %; say it in its own words
        summary["final_success_rate"] = final.get("success_rate")
        summary["best_success_rate"] = max((h["success_rate"] for h in history), default=None)
    write_json(summary, run_dir / "summary.json")
    return summary


def peak_memory_mb(device) -> float:
    """The process's peak resident memory (CPU) or the peak memory torch allocated on a CUDA ``device``, in MiB."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports ru_maxrss in KiB


def _true_reward(source, data) -> torch.Tensor:
    """The union's true reward per transition (shared data: the target task's)."""
    if TARGET_REWARD in data.union.keys(True):
        return data.union.get(TARGET_REWARD)
    return source.load(reward="true").union.get(("next", "reward"))


@torch.no_grad()
def _reward_correction_figure(true_reward, union, learner: Learner, run_dir, title, device) -> dict:
    """``union``: the training set as the learner reads it (its log-ratio included), row for row the data's union."""
    n = min(5000, union.shape[0])
    idx = torch.randperm(union.shape[0], generator=torch.Generator().manual_seed(0))[:n]
    batch = union[idx].to_tensordict().to(device)
    seen = batch["next", "reward"].squeeze(-1)
    delta = learner.losses["rgm_loss"].reward_correction_values(batch).squeeze(-1)
    true_r = true_reward[idx].squeeze(-1)
    real = ~batch["absorbing"].squeeze(-1).cpu() if "absorbing" in batch.keys() else torch.ones(n, dtype=torch.bool)
    return plot_reward_correction(true_r[real].numpy(), seen.cpu()[real].numpy(), (seen + delta).cpu()[real].numpy(),
                                  run_dir / "reward_correction.png", title)


def format_summary(s: dict) -> str:
    """:func:`report`'s summary as the lines a recipe prints at the end of a run."""
    def f(x, fmt=".1f"):
        return "n/a" if x is None else format(x, fmt)

    lines = [
        "",
        f"final normalised score  {f(s['final_normalized_score'])} ± {f(s['final_normalized_score_std'])}",
        f"best normalised score   {f(s['best_normalized_score'])}",
        *([f"closest to the demo     {f(s['selected_normalized_score'])}   (update {s['selected_step']}: "
           "selected_policy.pt, chosen without the simulator)"] if "selected_normalized_score" in s else []),
        *([f"final success rate      {f(s['final_success_rate'], '.2f')}"] if "final_success_rate" in s else []),
        f"union data's score      {f(s['union_normalized_score'])}",
        f"expert data's score     {f(s['expert_normalized_score'])}",
        f"wall time               {f(s['wall_time_s'], '.0f')} s   ({f(s['updates_per_s'])} updates/s, "
        f"{s.get('precision', 'float32')}, {s.get('torch_threads', '?')} threads)",
        *([f"discriminator, memory   {f(s['discriminator_s'])} s pre-training, peak {f(s['peak_memory_mb'], '.0f')} MiB"]
          if s.get("discriminator_s") is not None else []),
    ]
    if "spearman_corrected_vs_true" in s:
        lines.append(f"rank corr. with true r  seen {s['spearman_seen_vs_true']:.3f} → corrected "
                     f"{s['spearman_corrected_vs_true']:.3f}")
    lines.append(f"outputs                 {s['run_dir']}")
    if "final_success_rate" not in s:
        lines.append("scores: 0 = a random policy, 100 = the expert policy; union/expert data's score = their own "
                     "episodes; every method on this setting: docs/results.md (benchmarks/results/*.md)")
    return "\n".join(lines)


def run_diagnostics(cfg, source, algorithm: Algorithm, data, learner: Learner, union, device,
                    true_reward: torch.Tensor | None = None) -> dict:
    """:mod:`torchrl_rgm.diagnostics` of a trained run: the share of the policy-extraction weight
    (:meth:`~torchrl_rgm.algorithms.Algorithm.extraction_weights`) on ``D^O``'s top-decile episodes and, with a
    correction, Spearman(Δr, true reward) on ``D^O`` (``true_reward``: the union's, if the caller has it loaded
    already; else it is loaded). Empty for shared data (its sources have their own)."""
    if domain(cfg) == "datasharing" or "episode_return" not in union.keys():
        return {}
    out = {}
    initial = algorithm.initial_observation(cfg, data)
    weights = algorithm.extraction_weights(cfg, learner, union, initial, device)
    if weights is not None:
        out.update(top_decile_weight_share(union, weights))
        out.update(expert_weight_share(union, weights))
        out.update(start_weight_share(union, weights))
    out.update(discriminator_calibration(union))
    if "rgm_loss" in learner.losses:
        out.update(correction_gap_diagnostics(learner.losses["rgm_loss"], union, initial, device))
    if learner.correction is not None:
        out["spearman_correction_vs_true"] = correction_rank_correlation(
            learner.losses["rgm_loss"], None, union,
            _true_reward(source, data) if true_reward is None else true_reward,
            learner.losses["rgm_loss"].res_scale, device)
    return out


def source_diagnostics(algorithm: Algorithm, data, learner: Learner, union, device) -> dict:
    """Per source dataset: transitions, mean reward the learner saw and the target's true reward (per
    step, the data's units); with RGM's lower level the mean corrected reward (when the reward is read) and the
    mean visitation weight relative to the union's mean (> 1: the policy's visitation favours the source)."""
    values = {"reward_seen": algorithm.seen_reward(data, union), "target_reward": union.get(TARGET_REWARD)}
    if "rgm_loss" in learner.losses:
        diag = transition_diagnostics(learner.losses["rgm_loss"], union, data.initial_observation, device)
        if algorithm.reads_reward:
            values["corrected_reward"] = diag["corrected_reward"] * data.reward_std + data.reward_mean
        real = ~union.get("absorbing").reshape(-1) if "absorbing" in union.keys() else slice(None)
        w = diag["visitation_weight"].reshape(-1)
        values["visitation_weight"] = w / w[real].mean().clamp(min=1e-12)
    return per_source_means(union, values, data.info["sources"])
