"""Multi-task data sharing: RGM against naive sharing, the relabelled oracle, BC and SMODICE, per target task.

    python benchmarks/datasharing.py                                   # every target task × 5 algorithms × 3 seeds
    python benchmarks/datasharing.py --targets halfcheetah-run-backward halfcheetah-jump --jobs 2
    python benchmarks/datasharing.py --report-only                     # table, plot and JSON from the CSV

Every run is ``recipes/rgm_datasharing.py`` in a subprocess: the union is the other tasks' datasets of
the family (``--source-level``, each with its own task's reward), the target's own logs without
reward, and one expert trajectory of the target; scores are normalised by the target task's random
and expert returns. Missing ``rgm/<task>/*`` datasets are built first (once, before any run). A row
lands in the CSV when its run ends (atomic rewrite); an interrupted benchmark resumes, skipping rows
present and continuing half-done runs from their checkpoints.

Outputs: ``benchmarks/results/datasharing.{csv,md,png,json}`` (+ ``.spec.json``: the budget the rows
were produced with). The CSV has the study's columns (``benchmarks/imperfect_rewards.py``) plus
``target_task``: ``env`` is the family, ``dataset`` the sources' level, ``reward`` what the learner
was given (``source``: each source's own task reward; ``relabeled``: the target's; ``any``: ignored).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import run_all, run_recipe  # noqa: E402
from benchmarks.imperfect_rewards import COLUMNS as STUDY_COLUMNS  # noqa: E402
from benchmarks.imperfect_rewards import _atomic_text, bootstrap_ci, check_spec, read_rows, write_rows  # noqa: E402
from torchrl_rgm.generation.tasks import TASKS  # noqa: E402
from torchrl_rgm.report import save_figure, write_json  # noqa: E402

COLUMNS = [*STUDY_COLUMNS, "target_task"]
ALGOS = ("rgm", "iql_shared", "iql_relabeled", "bc", "smodice")
REWARD_OF = {"rgm": "source", "iql_shared": "source", "iql_relabeled": "relabeled", "bc": "any", "smodice": "any"}
TARGET_GAIN = 15.0  # RGM must beat naive sharing by this many normalised points


class BenchmarkError(ValueError):
    pass


def run_one(target: str, algo: str, seed: int, spec: dict, out_dir: Path, threads: int = 1) -> dict:
    """One recipe run; its CSV row (a failed run is a row, not an exception)."""
    row = {"env": TASKS[target].env, "dataset": spec["source_level"], "reward": REWARD_OF[algo], "algo": algo,
           "seed": str(seed), "final_score": "", "best_score": "", "wall_s": "", "status": "failed", "error": "",
           "target_task": target}
    start = time.time()
    args = [f"env.name={target}", f"algo={algo}", f"seed={seed}", f"budget.updates={spec['updates']}",
            f"eval.every={spec['eval_every']}", f"checkpoint_every={spec['eval_every']}",
            f"eval.episodes={spec['eval_episodes']}", f"budget.discriminator_steps={spec['discriminator_steps']}",
            f"dataset.source_level={spec['source_level']}", "dataset.build_if_missing=false", *spec["overrides"]]
    summary, error, _ = run_recipe(ROOT / "recipes" / "rgm_datasharing.py", args, out_dir / f"{target}-{algo}-s{seed}",
                                   threads, ROOT)
    row["wall_s"] = f"{time.time() - start:.1f}"
    if summary is None:
        row["error"] = error
        return row
    row.update(final_score=f"{summary['final_normalized_score']:.3f}",
               best_score=f"{summary['best_normalized_score']:.3f}", status="ok")
    return row


def prebuild(targets: list[str], source_level: str) -> None:
    """Build every missing dataset the runs need, once, before they start (runs never build in parallel)."""
    from torchrl_rgm.generation.build import build_env
    from torchrl_rgm.data.sharing import default_sources, missing_task_datasets

    needed = [name for target in targets for name in
              default_sources(target, source_level) + [f"{target}/{source_level}", f"{target}/expert"]]
    for task, levels in missing_task_datasets(needed).items():
        print(f"building rgm/{task}/{levels}", flush=True)
        build_env(task, levels=levels)


def _order(row: dict) -> tuple:
    return (row["target_task"], ALGOS.index(row["algo"]) if row["algo"] in ALGOS else 99, int(row["seed"]))


def summarise(rows: list[dict]) -> dict:
    """Per target and algorithm: final scores over seeds; per algorithm: the mean over targets (equal weight)."""
    ok = [r for r in rows if r["status"] == "ok"]
    targets = [t for t in TASKS if any(r["target_task"] == t for r in ok)]
    algos = [a for a in ALGOS if any(r["algo"] == a for r in ok)]
    per_target, overall = {}, {}
    for algo in algos:
        groups = []
        for t in targets:
            x = np.array([float(r["final_score"]) for r in ok if r["algo"] == algo and r["target_task"] == t])
            if len(x):
                lo, hi = bootstrap_ci([x], np.mean)
                per_target.setdefault(t, {})[algo] = {"mean": float(x.mean()), "ci95": [lo, hi], "per_seed": x.tolist()}
                groups.append(x)
        if groups:
            means = [g.mean() for g in groups]
            lo, hi = bootstrap_ci(groups, lambda v, sizes=[len(g) for g in groups]: _mean_of_means(v, sizes))
            overall[algo] = {"mean": float(np.mean(means)), "ci95": [lo, hi], "targets": len(groups),
                             "runs": int(sum(len(g) for g in groups)),
                             "failed": sum(r["algo"] == algo and r["status"] != "ok" for r in rows)}
    return {"targets": targets, "per_target": per_target, "overall": overall, "checks": checks(per_target, overall)}


def _mean_of_means(values: np.ndarray, sizes: list[int]) -> float:
    """Mean over targets of each target's mean (``values`` are the targets' runs concatenated)."""
    bounds = np.cumsum([0, *sizes])
    return float(np.mean([values[a:b].mean() for a, b in zip(bounds[:-1], bounds[1:])]))


def checks(per_target: dict, overall: dict) -> list[dict]:
    """The issue's targets, on the mean over the targets that every compared algorithm ran."""
    out = []
    for other, margin, what in (("iql_shared", TARGET_GAIN, "naive sharing + 15"), ("bc", 0.0, "BC"),
                                ("smodice", 0.0, "SMODICE"), ("iql_relabeled", None, "relabelled oracle (gap)")):
        common = [t for t, cell in per_target.items() if "rgm" in cell and other in cell]
        if not common:
            continue
        rgm = float(np.mean([per_target[t]["rgm"]["mean"] for t in common]))
        base = float(np.mean([per_target[t][other]["mean"] for t in common]))
        entry = {"vs": other, "what": what, "targets": common, "rgm": rgm, "other": base, "gap": rgm - base}
        if margin is not None:
            entry["needed"] = margin
            entry["met"] = rgm - base >= margin
        out.append(entry)
    return out


def markdown(summary: dict, spec: dict) -> str:
    algos = [a for a in ALGOS if a in summary["overall"]]
    lines = [f"Normalised final score (100 = the target task's expert, 0 = random actions) on the `rgm/<task>` datasets: "
             f"union = the family's other tasks' `{spec['source_level']}` data with their own rewards + the target's "
             f"`{spec['source_level']}` data unlabelled + 1 expert trajectory of the target. {spec['updates']} updates, "
             f"{spec['eval_episodes']} evaluation episodes; mean [95% bootstrap CI] over seeds (per-seed values).", "",
             "| target task | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
    for t in summary["targets"]:
        cells = []
        for a in algos:
            c = summary["per_target"][t].get(a)
            cells.append("–" if c is None else f"{c['mean']:.1f} [{c['ci95'][0]:.1f}, {c['ci95'][1]:.1f}] "
                         f"({', '.join(f'{v:.0f}' for v in c['per_seed'])})")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    cells = []
    for a in algos:
        o = summary["overall"][a]
        cells.append(f"**{o['mean']:.1f}** [{o['ci95'][0]:.1f}, {o['ci95'][1]:.1f}]"
                     + (f" ({o['failed']} failed)" if o["failed"] else ""))
    lines.append("| mean over targets | " + " | ".join(cells) + " |")
    lines += ["", "Targets (means over target tasks):"]
    for c in summary["checks"]:
        if "met" in c:
            lines.append(f"- RGM − {c['vs']}: {c['gap']:+.1f} points (needs ≥ {c['needed']:+.0f}) → "
                         f"{'met' if c['met'] else 'missed'}")
        else:
            lines.append(f"- gap to the {c['what'].split(' (')[0]}: RGM − {c['vs']} = {c['gap']:+.1f} points")
    return "\n".join(lines) + "\n"


def source_table(summary: dict, runs_dir: Path, seeds: int) -> str:
    """What RGM learned: per target and source, the mean corrected reward and visitation weight over seeds."""
    lines = ["", "What RGM learned (means over seeds of each run's `per_source` in summary.json): reward per step "
             "seen → corrected (r + Δr), the target's true reward, and the visitation weight d^π/d^D relative to "
             "the union's mean.", "", "| target | source | seen → corrected | target's reward | weight |",
             "|---|---|---|---|---:|"]
    found = False
    for t in summary["targets"]:
        per = [json.loads(p.read_text()).get("per_source", {}) for s in range(seeds)
               if (p := runs_dir / f"{t}-rgm-s{s}" / "summary.json").exists()]
        if not per:
            continue
        found = True
        for name in per[0]:
            m = {k: float(np.mean([p[name][k] for p in per if name in p])) for k in
                 ("reward_seen", "corrected_reward", "target_reward", "visitation_weight")}
            lines.append(f"| {t} | {name} | {m['reward_seen']:.2f} → {m['corrected_reward']:.2f} | "
                         f"{m['target_reward']:.2f} | {m['visitation_weight']:.2f} |")
    return "\n".join(lines) + "\n" if found else ""


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = [a for a in ALGOS if a in summary["overall"]]
    groups = summary["targets"] + ["mean"]
    fig, ax = plt.subplots(figsize=(1.9 * len(groups) + 2, 4))
    width = 0.8 / max(len(algos), 1)
    for i, algo in enumerate(algos):
        xs, ys, lo, hi = [], [], [], []
        for j, t in enumerate(groups):
            c = summary["overall"].get(algo) if t == "mean" else summary["per_target"][t].get(algo)
            if c is None:
                continue
            xs.append(j + (i - (len(algos) - 1) / 2) * width)
            ys.append(c["mean"])
            lo.append(c["mean"] - c["ci95"][0])
            hi.append(c["ci95"][1] - c["mean"])
        ax.bar(xs, ys, width, label=algo, color=f"C{i}", alpha=0.8)
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", color="k", capsize=2, lw=0.8)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(range(len(groups)), groups, fontsize=8, rotation=15)
    ax.set_ylabel("normalised score")
    ax.set_title("data sharing: target task from other tasks' data + 1 expert trajectory")
    ax.legend(fontsize=8, ncol=len(algos))
    ax.grid(alpha=0.3, axis="y")
    save_figure(fig, path)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="+", default=sorted(TASKS), help=f"target tasks (default all: {sorted(TASKS)})")
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), help=f"subset of {list(ALGOS)}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=5000)
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--discriminator-steps", type=int, default=2000)
    parser.add_argument("--source-level", default="medium", help="level of the sources and of the target's unlabelled data")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--override", action="append", default=[], help="extra recipe override (repeatable)")
    parser.add_argument("--csv", type=Path, default=ROOT / "benchmarks" / "results" / "datasharing.csv")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "outputs" / "datasharing_benchmark")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    for name, values, valid in (("target task", args.targets, TASKS), ("algorithm", args.algos, ALGOS)):
        bad = [v for v in values if v not in valid]
        if bad:
            raise BenchmarkError(f"Unknown {name} {bad}; valid choices are {sorted(valid)}.")
    if args.seeds < 1 or args.updates < 1 or args.eval_every < 1 or args.eval_episodes < 1:
        raise BenchmarkError("--seeds, --updates, --eval-every and --eval-episodes must be ≥ 1.")
    spec = {"updates": args.updates, "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
            "discriminator_steps": args.discriminator_steps, "source_level": args.source_level,
            "overrides": list(args.override)}
    csv_path = args.csv
    rows = read_rows(csv_path, COLUMNS)
    if not args.report_only:
        check_spec(csv_path.with_suffix(".spec.json"), {**spec, "overrides": spec["overrides"] + [
            f"dataset.source_level={args.source_level}"]}, rows)
        done = {(r["target_task"], r["algo"], r["seed"]) for r in rows if r["status"] == "ok"}
        # seed-major: an interrupted benchmark has whole seeds of every target
        todo = [(t, a, s) for s in range(args.seeds) for t in args.targets for a in args.algos
                if (t, a, str(s)) not in done]
        rows = [r for r in rows if (r["target_task"], r["algo"], int(r["seed"])) not in set(todo)]
        print(f"{len(todo)} runs to do ({len(done)} in {csv_path})", flush=True)
        if todo:
            prebuild(sorted({t for t, _, _ in todo}), args.source_level)

        def land(row):
            rows.append(row)
            write_rows(csv_path, rows, COLUMNS, _order)
            print(f"{row['target_task']} {row['algo']} seed {row['seed']}: {row['status']} final "
                  f"{row['final_score']} ({row['wall_s']} s) {row['error']}", flush=True)

        calls = [partial(run_one, t, a, s, spec, args.runs_dir) for t, a, s in todo]
        print(f"done in {run_all(calls, args.jobs, land):.0f} s")
    summary = summarise(rows)
    seeds = max((int(r["seed"]) for r in rows), default=-1) + 1
    text = markdown(summary, spec) + source_table(summary, args.runs_dir, seeds)
    write_json({"spec": spec, **summary}, csv_path.with_suffix(".json"))
    _atomic_text(csv_path.with_suffix(".md"), text)
    if summary["overall"]:
        plot(summary, csv_path.with_suffix(".png"))
    print(text)
    return summary


if __name__ == "__main__":
    main()
