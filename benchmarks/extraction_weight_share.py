"""Where a trained RGM run's extraction weight goes, with and without a weight clip.

For each run directory (a recipe run: ``config.yaml`` and ``checkpoint.pt``) this rebuilds the networks, prepares the
union as the update saw it (the frozen discriminator's calibrated ``log d^E/d^D``), and reports for the
discriminator's ratio ``ρ`` and for the learnt ``w = d^π/d^D`` (:func:`~torchrl_rgm.diagnostics.transition_diagnostics`):
the expert's share of the weight and the weights' effective sample size over the union's size
(:func:`~torchrl_rgm.diagnostics.expert_weight_share`), unclipped and clipped at each ``--clips`` value, and the
median on the expert's rows with the share of them above the clip.

    python benchmarks/extraction_weight_share.py outputs/<run> [outputs/<run> ...] --clips 100 1000

Prints a table and writes ``benchmarks/results/extraction_weight_share.json`` (``--out``; atomically).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from omegaconf import OmegaConf  # noqa: E402

from torchrl_rgm.algorithms import get_algorithm  # noqa: E402
from torchrl_rgm.diagnostics import expert_weight_share, transition_diagnostics  # noqa: E402
from torchrl_rgm.report import write_json  # noqa: E402
from torchrl_rgm.sources import make_source  # noqa: E402
from torchrl_rgm.train import load_checkpoint  # noqa: E402


def weight_shares(run_dir: Path, clips: list[float], device="cpu") -> list[dict]:
    cfg = OmegaConf.load(run_dir / "config.yaml")
    algorithm = get_algorithm(cfg.algo.name)
    if getattr(algorithm, "learns_correction", None) not in (True, False):  # RGM and SMODICE learn w = d^pi/d^D
        raise SystemExit(f"{run_dir}: algo={cfg.algo.name} has no visitation weights; pass an rgm or smodice run.")
    data = make_source(cfg).load()
    learner = algorithm.build(cfg, data, device)
    learner.load_networks(load_checkpoint(run_dir / "checkpoint.pt"))
    union = algorithm.prepare_union(cfg, learner, data.union.to_tensordict(), device, expert=data.expert.to_tensordict())
    w = transition_diagnostics(learner.losses["rgm_loss"], union, data.initial_observation, device)["visitation_weight"]
    rho = union.get("log_density_ratio").exp()
    on_expert = union.get("is_expert").reshape(-1).bool()
    rows = []
    for name, x in (("rho", rho.reshape(-1)), ("w", w.reshape(-1))):
        for clip in (None, *clips):
            share = expert_weight_share(union, x if clip is None else x.clamp(max=clip))
            rows.append({"run": run_dir.name, "weights": name, "clip": clip, **share,
                         "median_on_expert": float(x[on_expert].median()),
                         "expert_rows_above_clip": float("nan") if clip is None else
                         float((x[on_expert] > clip).double().mean())})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--clips", nargs="+", type=float, default=[100.0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "extraction_weight_share.json")
    args = p.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "config.yaml").exists() or not (r / "checkpoint.pt").exists()]
    if missing:
        raise SystemExit(f"Not a finished run directory (needs config.yaml and checkpoint.pt): {', '.join(missing)}.")
    if any(not c > 0 for c in args.clips):
        raise SystemExit(f"--clips must be > 0, got {args.clips}.")
    rows = [r for run in args.runs for r in weight_shares(run, args.clips, args.device)]
    print(f"{'run':48s} {'weights':7s} {'clip':>7s} {'expert share':>12s} {'ESS':>8s} {'median on D^E':>13s} "
          f"{'D^E rows > clip':>15s}")
    for r in rows:
        clip = "none" if r["clip"] is None else f"{r['clip']:g}"
        print(f"{r['run']:48s} {r['weights']:7s} {clip:>7s} {r['expert_weight_share']:12.3f} "
              f"{r['weight_ess_fraction']:8.4f} {r['median_on_expert']:13.1f} {r['expert_rows_above_clip']:15.2f}")
    write_json({"rows": rows}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
