"""Run reports: summary.json, learning curve and reward-correction plots."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

__all__ = ["write_json", "save_figure", "plot_learning_curve", "plot_per_source", "plot_reward_correction",
           "rank_correlations"]


def write_json(payload: dict, path) -> None:
    """Atomic: a temporary file in the same directory, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def save_figure(fig, path) -> None:
    """Atomic: the figure goes to a temporary file in the same directory, then is renamed; closes it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def plot_learning_curve(history: list[dict], expert: float | None, union: float | None, path, title: str) -> None:
    """Save the normalised score (mean ± std) of each evaluation in ``history`` to ``path``.

    ``expert`` and ``union``, when given, are the datasets' own normalised scores, drawn as
    horizontal reference lines.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4))
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
    return {
        "spearman_seen_vs_true": float(spearmanr(seen_reward, true_reward).statistic),
        "spearman_corrected_vs_true": float(spearmanr(corrected_reward, true_reward).statistic),
    }


def plot_reward_correction(true_reward, seen_reward, corrected_reward, path, title: str) -> dict:
    """Save scatter plots of the seen and of the corrected reward against the true one to ``path``.

    Returns :func:`rank_correlations` of the three rewards (also shown in the panels' titles).
    """
    corr = rank_correlations(true_reward, seen_reward, corrected_reward)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharex=True)
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
    fig, axes = plt.subplots(1, 2 if has_weight else 1, figsize=(11 if has_weight else 6, 4.2), squeeze=False)
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
