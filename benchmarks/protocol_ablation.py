"""Each part of the authors' protocol alone, and all together: RGM on medium-replay with the partial reward.

    python benchmarks/protocol_ablation.py                     # hopper + halfcheetah, 7 variants x 3 seeds
    python benchmarks/protocol_ablation.py --report-only       # table from the CSV
    python benchmarks/protocol_ablation.py --precision --updates 24000 --jobs 1   # float32 vs bfloat16 (issue 19)

The variants (``recipes/config/protocol/paper.yaml`` holds the parts of ``protocol=paper``):

- ``ours``: this project's defaults (the expert trajectory in the union with the reward setting's reward,
  terminal transitions with done = 0, Δr's learning rate rescaled to the budget, Δr's default init);
- ``union=D^O``: the expert trajectory trains the discriminator only (``dataset.add_expert_to_union=false``);
- ``expert r=0``: the expert stays in the union with reward 0 (``dataset.expert_union_reward=zero``);
- ``done=1``: terminal transitions keep done = 1 next to the absorbing state (``data.terminal_done=true``);
- ``Δr lr paper``: 3e-7 cosine over 1e6 updates (``algo.correction_lr_schedule=paper``);
- ``Δr=0 init``: Δr starts at 0 (``algo.correction_zero_init=true``);
- ``paper``: all of them (``protocol=paper``).

Each run is the recipe in its own process (``benchmarks.common.run_recipe``: resumable, a failure is a row);
rows land in ``results/protocol_ablation.csv`` as runs end; ``.md`` holds the table (mean [95% bootstrap CI]
over seeds per env, the mean over envs, and the runs' diagnostics).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import run_all, run_recipe  # noqa: E402
from benchmarks.imperfect_rewards import _atomic_text, bootstrap_ci, read_rows, write_rows  # noqa: E402

VARIANTS = {
    "ours": [],
    "union=D^O": ["dataset.add_expert_to_union=false"],
    "expert r=0": ["dataset.expert_union_reward=zero"],
    "done=1": ["data.terminal_done=true"],
    "Δr lr paper": ["algo.correction_lr_schedule=paper"],
    "Δr=0 init": ["algo.correction_zero_init=true"],
    "paper": ["protocol=paper"],
}
COLUMNS = ["env", "dataset", "reward", "variant", "seed", "final_score", "best_score", "top_decile_weight_share",
           "spearman_correction_vs_true", "wall_s", "status", "error"]
KEY = ("env", "dataset", "reward", "variant", "seed")
SLUG = {"ours": "ours", "union=D^O": "union_DO", "expert r=0": "expert_r0", "done=1": "done1",
        "Δr lr paper": "lr_paper", "Δr=0 init": "zero_init", "paper": "paper"}
#: ``--precision``: the paper's protocol in float32 and under bfloat16 autocast (issue 19's quality check).
PRECISION_VARIANTS = {"paper": ["protocol=paper"], "paper, bfloat16": ["protocol=paper", "precision=bfloat16"]}
SLUG["paper, bfloat16"] = "paper_bf16"
ALL_VARIANTS = {**VARIANTS, **PRECISION_VARIANTS}


def overrides(env, dataset, reward, variant, seed, spec) -> list[str]:
    return [f"env={env}", f"dataset={dataset.replace('-', '_')}", f"reward={reward}", "algo=rgm", f"seed={seed}",
            *ALL_VARIANTS[variant],  # a command-line reward= wins over protocol=paper's default (partial)
            f"budget.updates={spec['updates']}", f"eval.every={spec['eval_every']}",
            f"checkpoint_every={spec['eval_every']}", f"eval.episodes={spec['eval_episodes']}",
            f"budget.discriminator_steps={spec['discriminator_steps']}"]


def run_one(env, dataset, reward, variant, seed, spec, out_dir: Path) -> dict:
    row = dict(env=env, dataset=dataset, reward=reward, variant=variant, seed=str(seed))
    run_dir = out_dir / f"{env}-{dataset}-{reward}-{SLUG[variant]}-s{seed}"
    summary, error, wall = run_recipe(ROOT / "recipes" / "rgm_mujoco.py",
                                      overrides(env, dataset, reward, variant, seed, spec), run_dir, 1, ROOT)
    if summary is None:
        return {**row, **{k: "" for k in COLUMNS if k not in row}, "status": "failed", "error": error,
                "wall_s": f"{wall:.1f}"}
    get = lambda k: "" if summary.get(k) is None else f"{summary[k]:.4f}"  # noqa: E731
    return {**row, "final_score": f"{summary['final_normalized_score']:.3f}",
            "best_score": f"{summary['best_normalized_score']:.3f}",
            "top_decile_weight_share": get("top_decile_weight_share"),
            "spearman_correction_vs_true": get("spearman_correction_vs_true"),
            "wall_s": f"{wall if wall is not None else summary['wall_time_s']:.1f}", "status": "ok", "error": ""}


def markdown(rows: list[dict], spec: dict, title: str = "The authors' protocol, part by part") -> str:
    ok = [r for r in rows if r["status"] == "ok"]
    envs = [e for e in spec["envs"] if any(r["env"] == e for r in ok)]

    def col(variant, key="final_score", env=None):
        return np.array([float(r[key]) for r in ok if r["variant"] == variant and r[key] != ""
                         and (env is None or r["env"] == env)])

    def fmt(x):
        if len(x) == 0:
            return "–"
        lo, hi = bootstrap_ci([x], np.mean)
        return f"{x.mean():.1f} [{lo:.1f}, {hi:.1f}]"

    out = [f"# {title}", "",
           f"RGM, {', '.join(spec['datasets'])}, reward {spec['reward']}, {spec['updates']} updates, "
           f"{spec['seeds']} seeds; final normalised score, mean [95% bootstrap CI] over seeds. "
           f"{len(ok)} runs ok, {len(rows) - len(ok)} failed. Diagnostics: share of the policy's weight on D^O's "
           "top-decile episodes, Spearman(Δr, true reward) on D^O (means over all runs of the variant).", "",
           "| variant | " + " | ".join(envs) + " | mean over envs | top-decile weight | Spearman Δr |",
           "|---|" + "---:|" * (len(envs) + 3)]
    for v in ALL_VARIANTS:
        if not len(col(v)):
            continue
        per_env = [col(v, env=e) for e in envs]
        means = [x.mean() for x in per_env if len(x)]
        share, rho = col(v, "top_decile_weight_share"), col(v, "spearman_correction_vs_true")
        out.append(f"| {v} | " + " | ".join(fmt(x) for x in per_env)
                   + f" | {np.mean(means):.1f} | {share.mean() if len(share) else float('nan'):.2f} "
                   f"| {rho.mean() if len(rho) else float('nan'):.2f} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["hopper", "halfcheetah"])
    p.add_argument("--dataset", default="medium-replay")
    p.add_argument("--reward", default="partial")
    p.add_argument("--variants", nargs="+", choices=list(ALL_VARIANTS),
                   help="default: the protocol's parts (with --precision: paper in float32 and bfloat16)")
    p.add_argument("--precision", action="store_true",
                   help="float32 vs bfloat16 autocast under the paper's protocol (results/precision_quality.*)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--updates", type=int, default=24000)
    p.add_argument("--eval-every", type=int, default=4000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--discriminator-steps", type=int, default=1000)
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    p.add_argument("--csv", type=Path, help="default results/<protocol_ablation|precision_quality>.csv")
    p.add_argument("--out-dir", type=Path, help="default outputs/<protocol_ablation|precision_quality>")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    name = "precision_quality" if args.precision else "protocol_ablation"
    args.variants = args.variants or list(PRECISION_VARIANTS if args.precision else VARIANTS)
    args.csv = args.csv or ROOT / "benchmarks" / "results" / f"{name}.csv"
    args.out_dir = args.out_dir or ROOT / "outputs" / name
    title = ("Training quality: float32 vs bfloat16 autocast (paper protocol)" if args.precision
             else "The authors' protocol, part by part")
    spec = dict(envs=args.envs, datasets=[args.dataset], reward=args.reward, seeds=args.seeds, updates=args.updates,
                eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                discriminator_steps=args.discriminator_steps)
    rows = read_rows(args.csv, COLUMNS)
    spec_path = args.csv.with_suffix(".spec.json")
    if args.report_only and spec_path.exists():
        spec = json.loads(spec_path.read_text())  # the table describes the runs the CSV holds
    elif rows and spec_path.exists() and json.loads(spec_path.read_text())["updates"] != spec["updates"]:
        sys.exit(f"error: {args.csv} holds runs of another budget ({spec_path}); pass the same --updates or another --csv.")
    if not args.report_only:
        _atomic_text(spec_path, json.dumps(spec, indent=1))
        done = {tuple(r[k] for k in KEY) for r in rows if r["status"] == "ok"}
        # seed-major: an interrupted ablation has whole seeds of every variant
        jobs = [(e, args.dataset, args.reward, v, s) for s in range(args.seeds) for e in args.envs for v in args.variants
                if (e, args.dataset, args.reward, v, str(s)) not in done]
        print(f"{len(jobs)} runs to go")

        def on_row(row):
            nonlocal rows
            rows = [r for r in rows if tuple(r[k] for k in KEY) != tuple(row[k] for k in KEY)] + [row]
            write_rows(args.csv, rows, COLUMNS, sort_key=lambda r: tuple(r[k] for k in KEY))
            print(f"{row['env']} {row['variant']} s{row['seed']}: {row['status']} {row['final_score']} "
                  f"({row['wall_s']} s) {row['error']}", flush=True)

        run_all([lambda j=j: run_one(*j, spec, args.out_dir) for j in jobs], args.jobs, on_row)
        rows = read_rows(args.csv, COLUMNS)
    text = markdown(rows, spec, title)
    _atomic_text(args.csv.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
