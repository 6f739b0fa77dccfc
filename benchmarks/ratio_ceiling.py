"""The ceiling the discriminator sets on RGM's policy extraction: BC on rows drawn in proportion to its ratio.

At the upper level's optimum RGM's extraction weights equal the discriminator's ratio ``ρ = d^E/d^D`` wherever the
reward does not help (``../shared/METHOD.md``, "What the objective implies"), so weighted BC with ``w = ρ`` is the best
RGM's extraction can do with that discriminator — whatever the bound, the rates or the reward. This script measures
that ceiling without training RGM: per environment, seed and gradient penalty, it pre-trains the discriminator as a
run does (expert vs union, ``budget.discriminator_steps``), calibrates it (``algo.density_ratio_temperature=auto``),
then trains the package's BC (``algo=bc_expert``'s batch, actor and update) on rows drawn in proportion to ``ρ``
(:meth:`~torchrl_rgm.sampling.UnionReplayBuffer.set_extraction_weights`), beside BC on the expert's rows alone.

    python benchmarks/ratio_ceiling.py                                   # hopper, halfcheetah; GP 10 / 1 / 0; seed 0
    python benchmarks/ratio_ceiling.py --envs hopper --penalties 10 0 --seeds 0 1 2

Prints a table and writes ``benchmarks/results/ratio_ceiling.{json,md}`` (atomically).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))
sys.path.insert(0, str(ROOT))
from hydra import compose, initialize_config_dir  # noqa: E402

from torchrl_rgm.algorithms import get_algorithm  # noqa: E402
from torchrl_rgm.config import cpu_description  # noqa: E402
from torchrl_rgm.envs import make_policy_fn  # noqa: E402
from torchrl_rgm.report import write_json  # noqa: E402
from torchrl_rgm.sampling import UnionReplayBuffer  # noqa: E402
from torchrl_rgm.sources import make_source  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
KEYS = ("observation", "action", ("next", "observation"), ("next", "reward"), ("next", "done"),
        ("next", "terminated"))


def config(overrides):
    with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base=None):
        return compose("rgm_mujoco", overrides=overrides)


def weighted_bc(bc_cfg, data, source, union, weights, updates: int, seed: int) -> float:
    """Normalised score of BC trained ``updates`` steps on rows drawn in proportion to ``weights``."""
    torch.manual_seed(seed)
    learner = get_algorithm("bc_expert").build(bc_cfg, data, torch.device("cpu"))
    buffer = UnionReplayBuffer(union.select(*KEYS), data.initial_observation, bc_cfg.algo.batch_size, seed=seed)
    buffer.set_extraction_weights(weights)
    for _ in range(updates):
        learner.update(buffer.sample()["extraction"])
    returns = source.evaluate(make_policy_fn(learner.actor, data.normalize_observation, "cpu"), data)
    return float(np.mean(data.normalized_score(returns)))


def shares(weights: torch.Tensor, expert: torch.Tensor) -> dict:
    w = weights.double()
    return {"expert_weight_share": float(w[expert].sum() / w.sum()),
            "weight_ess_fraction": float(w.sum() ** 2 / (w.pow(2).sum() * w.numel()))}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["hopper", "halfcheetah"])
    p.add_argument("--dataset", default="medium_replay", help="a config of recipes/config/dataset")
    p.add_argument("--penalties", nargs="+", type=float, default=[10.0, 1.0, 0.0],
                   help="the discriminator's gradient penalty (the paper's: 10)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--discriminator-steps", type=int, default=2000)
    p.add_argument("--bc-updates", type=int, default=5000)
    p.add_argument("--out", type=Path, default=RESULTS / "ratio_ceiling")
    args = p.parse_args(argv)
    rows = []
    for env in args.envs:
        for seed in args.seeds:
            base = [f"env={env}", f"dataset={args.dataset}", f"seed={seed}",
                    f"budget.discriminator_steps={args.discriminator_steps}"]
            bc_cfg = config(base + ["algo=bc_expert"])
            source = make_source(bc_cfg)
            data = source.load()
            union = data.union.to_tensordict()
            expert = union.get("is_expert").reshape(-1).bool()
            t = time.time()
            score = weighted_bc(bc_cfg, data, source, union, expert.double(), args.bc_updates, seed)
            rows.append({"env": env, "seed": seed, "weights": "expert rows only", "gradient_penalty": None,
                         "temperature": None, **shares(expert.double(), expert), "bc_score": score,
                         "wall_s": time.time() - t})
            print(rows[-1], flush=True)
            for gp in args.penalties:
                t = time.time()
                cfg = config(base + ["algo=rgm", "algo.density_ratio_temperature=auto",
                                     f"algo.gradient_penalty={gp}"])
                algo = get_algorithm("rgm")
                learner = algo.build(cfg, data, torch.device("cpu"))
                algo.pretrain(cfg, learner, data, torch.Generator().manual_seed(seed), torch.device("cpu"))
                prepared = algo.prepare_union(cfg, learner, data.union.to_tensordict(), torch.device("cpu"),
                                              expert=data.expert)
                log_rho = prepared.get("log_density_ratio").reshape(-1).double()
                rho = (log_rho - log_rho.max()).exp()
                score = weighted_bc(bc_cfg, data, source, prepared, rho, args.bc_updates, seed)
                rows.append({"env": env, "seed": seed, "weights": "rho (calibrated)", "gradient_penalty": gp,
                             "temperature": learner.info["density_ratio_temperature"], **shares(rho, expert),
                             "bc_score": score, "wall_s": time.time() - t})
                print(rows[-1], flush=True)
    header = "| env | seed | BC's rows drawn from | gradient penalty | temperature | expert's weight share | weight ESS / N | BC score |"
    lines = [header, "|" + "---|" * 8]
    for r in rows:
        gp = "" if r["gradient_penalty"] is None else f"{r['gradient_penalty']:g}"
        temp = "" if r["temperature"] is None else f"{r['temperature']:.2f}"
        lines.append(f"| {r['env']} | {r['seed']} | {r['weights']} | {gp} | {temp} | {r['expert_weight_share']:.3f} "
                     f"| {r['weight_ess_fraction']:.4f} | {r['bc_score']:.1f} |")
    table = "\n".join(lines)
    print(table)
    meta = {"command": "python benchmarks/ratio_ceiling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "cpu": cpu_description(), "torch": torch.__version__,
            "bc_updates": args.bc_updates, "discriminator_steps": args.discriminator_steps}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json({"meta": meta, "rows": rows}, args.out.with_suffix(".json"))
    md = args.out.with_suffix(".md")
    tmp = md.with_name(md.name + ".tmp")
    tmp.write_text(f"Command: `{meta['command']}` (torch {meta['torch']})\n\n{table}\n")
    tmp.replace(md)
    return rows


if __name__ == "__main__":
    main()
