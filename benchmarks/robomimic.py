"""Robomimic with the sparse success reward: RGM against BC on the union and IQL, over seeds.

    python benchmarks/robomimic.py                      # lift: rgm, bc, iql × 3 seeds, two runs at a time
    python benchmarks/robomimic.py --task can --seeds 5
    python benchmarks/robomimic.py --report-only        # table and plot from the CSV

Every run is ``recipes/rgm_robomimic.py`` in a subprocess on the same generated files (``mg`` union,
``ph`` expert demos), budget and evaluation (success rate over ``--eval-episodes`` episodes of 400
steps). A row lands in the CSV when its run ends (atomic rewrite); an interrupted benchmark resumes,
skipping rows present and continuing half-done runs from their checkpoints.

Outputs: ``benchmarks/results/robomimic_<task>.{csv,md,png,json}`` — per algorithm the final and best
success rate (mean ± 95% bootstrap CI over seeds) and the targets (RGM > BC, RGM > IQL).
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import run_all, run_recipe  # noqa: E402
from benchmarks.imperfect_rewards import _atomic_text, bootstrap_ci, read_rows, write_rows  # noqa: E402
from torchrl_rgm.generation.robomimic_build import TASKS  # noqa: E402
from torchrl_rgm.report import save_figure, write_json  # noqa: E402

COLUMNS = ["task", "algo", "seed", "final_success", "best_success", "wall_s", "status", "error"]
ALGOS = ("rgm", "bc", "iql")


def run_one(task: str, algo: str, seed: int, spec: dict, out_dir: Path, threads: int) -> dict:
    """One recipe run in a subprocess; its CSV row (a failed run is a row, not an exception)."""
    row = {"task": task, "algo": algo, "seed": str(seed), "final_success": "", "best_success": "", "wall_s": "",
           "status": "failed", "error": ""}
    start = time.time()
    args = [f"env.name={task}", f"algo={algo}", f"seed={seed}", f"budget.updates={spec['updates']}",
            f"eval.every={spec['eval_every']}", f"checkpoint_every={spec['eval_every']}",
            f"eval.episodes={spec['eval_episodes']}", *spec["overrides"]]
    summary, error, _ = run_recipe(ROOT / "recipes" / "rgm_robomimic.py", args, out_dir / f"{task}-{algo}-s{seed}",
                                   threads, ROOT)
    row["wall_s"] = f"{time.time() - start:.1f}"
    if summary is None:
        row["error"] = error
        return row
    row.update(final_success=f"{summary['final_success_rate']:.3f}", best_success=f"{summary['best_success_rate']:.3f}",
               status="ok")
    return row


def _order(row: dict) -> tuple:
    return row["task"], ALGOS.index(row["algo"]) if row["algo"] in ALGOS else 99, int(row["seed"])


def summarise(rows: list[dict]) -> dict:
    out = {}
    for algo in dict.fromkeys(r["algo"] for r in rows):
        ok = [r for r in rows if r["algo"] == algo and r["status"] == "ok"]
        entry = {"runs": len(ok), "failed": sum(r["algo"] == algo and r["status"] != "ok" for r in rows)}
        for col in ("final_success", "best_success"):
            x = 100 * np.array([float(r[col]) for r in ok])
            if len(x):
                lo, hi = bootstrap_ci([x], np.mean)
                entry[col] = {"mean": float(x.mean()), "ci95": [lo, hi], "per_seed": x.tolist()}
        out[algo] = entry
    return out


def markdown(summary: dict, spec: dict) -> str:
    lines = [f"Success rate (%) on generated {spec['task']} data (mg union + {spec['n_expert']} ph demos, sparse "
             f"reward), {spec['updates']} updates, {spec['eval_episodes']} evaluation episodes; mean [95% bootstrap CI] "
             "over seeds (per-seed values).", "",
             *([f"Variant `{spec['tag']}`: overrides {spec['overrides'][1:]}.", ""] if spec.get("tag") else []),
             "| algorithm | runs | final | best during training |", "|---|---:|---|---|"]
    for algo, e in summary.items():
        cells = []
        for col in ("final_success", "best_success"):
            c = e.get(col)
            cells.append("–" if c is None else f"{c['mean']:.1f} [{c['ci95'][0]:.1f}, {c['ci95'][1]:.1f}] "
                         f"({', '.join(f'{v:.0f}' for v in c['per_seed'])})")
        runs = f"{e['runs']} ({e['failed']} failed)" if e["failed"] else str(e["runs"])
        lines.append(f"| {algo} | {runs} | {cells[0]} | {cells[1]} |")
    lines += ["", "Targets (final success rate, means over seeds):"]
    rgm = summary.get("rgm", {}).get("final_success")
    for base in ("bc", "iql"):
        other = summary.get(base, {}).get("final_success")
        if rgm and other:
            gap = rgm["mean"] - other["mean"]
            lines.append(f"- RGM − {base.upper()}: {gap:+.1f} points → {'met' if gap > 0 else 'missed'} (needs > 0)")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    algos = [a for a in summary if "final_success" in summary[a]]
    for i, algo in enumerate(algos):
        c = summary[algo]["final_success"]
        ax.bar(i, c["mean"], color=f"C{i}", alpha=0.6)
        ax.errorbar(i, c["mean"], yerr=[[c["mean"] - c["ci95"][0]], [c["ci95"][1] - c["mean"]]], color="k", capsize=4)
        ax.scatter([i] * len(c["per_seed"]), c["per_seed"], color="k", s=12, zorder=3)
    ax.set_xticks(range(len(algos)), [a.upper() for a in algos])
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"robomimic {task}, sparse reward")
    save_figure(fig, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="lift")
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=20000)
    parser.add_argument("--eval-every", type=int, default=10000, help="evaluations cost more than updates here")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--n-expert", type=int, default=10, help="dataset.n_expert_trajectories")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--override", action="append", default=[], help="extra recipe override (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "outputs" / "robomimic_benchmark")
    parser.add_argument("--tag", default="", help="names a variant's outputs: robomimic_<task>_<tag>.* (ablations)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    spec = {"task": args.task, "tag": args.tag, "updates": args.updates, "eval_every": args.eval_every,
            "eval_episodes": args.eval_episodes, "n_expert": args.n_expert,
            "overrides": [f"dataset.n_expert_trajectories={args.n_expert}", *args.override]}
    name = f"robomimic_{args.task}" + (f"_{args.tag}" if args.tag else "")
    csv_path = args.out / f"{name}.csv"
    rows = read_rows(csv_path, COLUMNS)
    if not args.report_only:
        done = {(r["algo"], r["seed"]) for r in rows if r["status"] == "ok"}
        todo = [(a, s) for s in range(args.seeds) for a in args.algos if (a, str(s)) not in done]
        rows = [r for r in rows if (r["algo"], int(r["seed"])) not in set(todo)]
        print(f"{len(todo)} runs to do ({len(done)} in {csv_path})")
        runs_dir = args.runs_dir / args.tag if args.tag else args.runs_dir

        def land(row):
            rows.append(row)
            write_rows(csv_path, rows, COLUMNS, _order)
            print(f"{row['algo']} seed {row['seed']}: {row['status']} final {row['final_success']} "
                  f"({row['wall_s']} s) {row['error']}", flush=True)

        calls = [partial(run_one, args.task, a, s, spec, runs_dir, 1) for a, s in todo]
        print(f"done in {run_all(calls, args.jobs, land):.0f} s")
    summary = summarise(rows)
    text = markdown(summary, spec)
    write_json({"spec": spec, "summary": summary}, csv_path.with_suffix(".json"))
    _atomic_text(csv_path.with_suffix(".md"), text)
    plot(summary, csv_path.with_suffix(".png"), args.task)
    print(text)


if __name__ == "__main__":
    main()
