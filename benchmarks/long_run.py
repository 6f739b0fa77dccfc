"""One long run's learning curve and table (docs/results.md, "One long run"), from the run directory the recipe wrote.

    python recipes/rgm_mujoco.py protocol=paper budget.updates=250000 eval.every=5000 checkpoint_every=5000 \
        run_dir=outputs/long_run/hopper-medium-replay-partial-paper-s0      # ≈ 20-80 min on one CPU thread
    python benchmarks/long_run.py outputs/long_run/hopper-medium-replay-partial-paper-s0

Writes ``benchmarks/results/long_run.{json,md}`` and ``docs/images/long_run_curve.png``: the normalised score
(± sd over the evaluation episodes), mean |Δr| and the mean visitation weight on ``D^O`` per evaluation, where it
plateaus (the mean of the last ten evaluations) and the run's summary (diagnostics included).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torchrl_rgm.report import save_figure, write_json  # noqa: E402

SERIES = {"normalized_score": "score", "normalized_score_std": "score_sd", "reward_correction_abs": "mean_abs_dr",
          "weight_union": "w_on_DO"}
#: D4RL hopper-medium-replay after 1M updates, partial reward (the paper's table).
PAPER_SCORE = 59.1


def read_curve(run_dir: Path) -> list[dict]:
    """Per evaluation step, the logged series of :data:`SERIES`."""
    scalars = run_dir / "logs" / "rgm" / "scalars"
    if not (scalars / "normalized_score.csv").exists():
        raise SystemExit(f"error: {scalars}/normalized_score.csv not found: pass a run directory of "
                         "recipes/rgm_mujoco.py (with logger=csv, the default).")
    rows: dict[int, dict] = {}
    for name, column in SERIES.items():
        path = scalars / f"{name}.csv"
        if path.exists():
            with path.open() as f:
                for step, value in csv.reader(f):
                    rows.setdefault(int(float(step)), {"step": int(float(step))})[column] = float(value)
    return [rows[s] for s in sorted(rows)]


def summarise(curve: list[dict], summary: dict, last: int = 10) -> dict:
    scores = np.array([r["score"] for r in curve])
    best = int(np.argmax(scores))
    return {"evaluations": len(curve), "updates": curve[-1]["step"], "best_score": float(scores[best]),
            "best_at": curve[best]["step"], f"mean_last_{last}": float(scores[-last:].mean()),
            "range_last": [float(scores[-last:].min()), float(scores[-last:].max())], "paper_score": PAPER_SCORE,
            "summary": summary, "curve": curve}


def markdown(result: dict, every: int = 25_000) -> str:
    lines = ["| updates | normalised score (± sd over episodes) | mean abs Δr | mean w on D^O |", "|---|---:|---:|---:|"]
    for r in result["curve"]:
        if r["step"] % every == 0 or r["step"] == 5000:
            lines.append(f"| {r['step'] // 1000}k | {r['score']:.1f} ± {r.get('score_sd', float('nan')):.1f} | "
                         f"{r.get('mean_abs_dr', float('nan')):.2f} | {r.get('w_on_DO', float('nan')):.2f} |")
    s, last = result["summary"], [k for k in result if k.startswith("mean_last_")][0]
    lines += ["", f"Best evaluation {result['best_score']:.1f} at {result['best_at'] // 1000}k; mean of the last "
              f"{last.rsplit('_', 1)[1]} evaluations {result[last]:.1f} (range {result['range_last'][0]:.1f}–"
              f"{result['range_last'][1]:.1f}); final {s.get('final_normalized_score', float('nan')):.1f}. The union's "
              f"episodes score {s.get('union_normalized_score', float('nan')):.1f}, the expert's "
              f"{s.get('expert_normalized_score', float('nan')):.1f}; the paper reports {PAPER_SCORE} after 1M updates "
              "on D4RL's set."]
    if "spearman_correction_vs_true" in s:
        lines.append(f"At the end: Spearman(Δr, true r) on D^O {s['spearman_correction_vs_true']:.2f}; share of the "
                     f"policy's weight on D^O's top-decile episodes {s['top_decile_weight_share']:.2f} (uniform: "
                     f"{s['top_decile_data_share']:.2f}).")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    curve = result["curve"]
    steps = np.array([r["step"] for r in curve]) / 1000
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    score = np.array([r["score"] for r in curve])
    sd = np.array([r.get("score_sd", 0.0) for r in curve])
    ax.plot(steps, score, marker="o", ms=3, label="RGM")
    ax.fill_between(steps, score - sd, score + sd, alpha=0.2)
    ax.axhline(result["summary"].get("union_normalized_score", np.nan), color="grey", ls="--", label="union data")
    ax.set(xlabel="updates (k)", ylabel="normalised score", title=title)
    ax.legend()
    ax2.plot(steps, [r.get("mean_abs_dr", np.nan) for r in curve], label="mean |Δr|")
    ax2.plot(steps, [r.get("w_on_DO", np.nan) for r in curve], label="mean w on D^O")
    ax2.set(xlabel="updates (k)", title="correction and weights")
    ax2.legend()
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "long_run")
    p.add_argument("--figure", type=Path, default=ROOT / "docs" / "images" / "long_run_curve.png")
    args = p.parse_args(argv)
    summary_path = args.run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    result = summarise(read_curve(args.run_dir), summary)
    write_json(result, args.out.with_suffix(".json"))
    text = markdown(result)
    args.out.with_suffix(".md").write_text(text)
    plot(result, args.figure, f"{args.run_dir.name}: {result['updates'] // 1000}k updates")
    print(text)
    return result


if __name__ == "__main__":
    main()
