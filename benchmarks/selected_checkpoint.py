"""The checkpoint a user without a simulator would keep, against the run's last: reads finished grid runs.

Every run of the recipe logs, at each evaluation, its policy's discounted action error on the demonstration's own
states (``demonstration_action_error``) and keeps the closest evaluation's actor (``selected_policy.pt``). This
script tabulates, per run, the final score, the best logged score (which needs a simulator to find) and the score
of the evaluation chosen by the demonstration alone; means per task and reward, and the same for every algorithm
given.

    python benchmarks/imperfect_rewards.py --expert-baselines --algos rgm --out-dir runs/sel ...   # the runs
    python benchmarks/selected_checkpoint.py runs/sel [more run dirs] --out benchmarks/results/selected_checkpoint

Writes ``<out>.csv`` (one row per run and evaluation), ``<out>.md`` (the table) and ``<out>.json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from torchrl_rgm.atomic import atomic_path  # noqa: E402


def scalar(run_dir: Path, name: str) -> dict[int, float]:
    path = next(run_dir.glob(f"logs/*/scalars/{name}.csv"), None)
    if path is None:
        return {}
    return {int(float(s)): float(v) for s, v in (line.split(",") for line in path.read_text().split())}


def read_runs(roots: list[Path]) -> list[dict]:
    runs = []
    for root in roots:
        for summary_path in sorted(Path(root).glob("*/summary.json")):
            run_dir, summary = summary_path.parent, json.loads(summary_path.read_text())
            if "selected_normalized_score" not in summary:
                continue  # a run from before the recipe measured its distance to the demonstration
            parts = run_dir.name.split("-")  # the grid's naming: <env>-<dataset, 2 words>-<reward>-<algo>-s<seed>
            if len(parts) != 6:
                continue
            runs.append({"run": run_dir.name, "env": parts[0], "reward": parts[3], "algo": parts[4],
                         "seed": int(parts[5].lstrip("s")),
                         "final": summary["final_normalized_score"], "best": summary["best_normalized_score"],
                         "selected": summary["selected_normalized_score"], "selected_step": summary["selected_step"],
                         "scores": scalar(run_dir, "normalized_score"),
                         "errors": scalar(run_dir, "demonstration_action_error")})
    return runs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("roots", nargs="+", type=Path, help="directories of run directories (a grid's --out-dir)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "selected_checkpoint")
    args = p.parse_args(argv)
    runs = read_runs(args.roots)
    if not runs:
        sys.exit(f"no finished run with a demonstration_action_error under {', '.join(map(str, args.roots))}")
    cells = defaultdict(list)
    for r in runs:
        cells[(r["algo"], r["env"], r["reward"])].append(r)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    lines = ["| algo | env | reward | seeds | final | best logged (needs a simulator) | closest to the demo | "
             "selected updates |", "|---|---|---|---:|---:|---:|---:|---|"]
    table = []
    for (algo, env, reward), rs in sorted(cells.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        row = {"algo": algo, "env": env, "reward": reward, "seeds": [r["seed"] for r in rs],
               "final": mean([r["final"] for r in rs]), "best": mean([r["best"] for r in rs]),
               "selected": mean([r["selected"] for r in rs]), "selected_steps": [r["selected_step"] for r in rs],
               "per_seed": [[round(r["final"], 1), round(r["selected"], 1)] for r in rs]}
        table.append(row)
        lines.append(f"| {algo} | {env} | {reward} | {len(rs)} | {row['final']:.1f} | {row['best']:.1f} | "
                     f"**{row['selected']:.1f}** | {', '.join(map(str, row['selected_steps']))} |")
    for algo in sorted({r["algo"] for r in runs}):
        rs = [r for r in runs if r["algo"] == algo]
        lines.append(f"| {algo} | all | all | {len(rs)} runs | {mean([r['final'] for r in rs]):.1f} | "
                     f"{mean([r['best'] for r in rs]):.1f} | **{mean([r['selected'] for r in rs]):.1f}** | |")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out.with_suffix(".md")) as tmp:
        Path(tmp).write_text(f"Command: `python benchmarks/selected_checkpoint.py {' '.join(map(str, args.roots))}`\n\n"
                             f"Final normalised score, the best logged one, and the one of the evaluation whose policy "
                             f"is closest to the demonstration (mean over seeds).\n\n{text}\n")
    with atomic_path(args.out.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps({"cells": table}, indent=1) + "\n")
    with atomic_path(args.out.with_suffix(".csv")) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["run", "env", "reward", "algo", "seed", "step", "normalized_score",
                        "demonstration_action_error", "selected"])
            for r in runs:
                for step in sorted(r["scores"]):
                    w.writerow([r["run"], r["env"], r["reward"], r["algo"], r["seed"], step,
                                f"{r['scores'][step]:.3f}", f"{r['errors'].get(step, float('nan')):.6f}",
                                int(step == r["selected_step"])])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
