"""Golden runs: every algorithm's short fixed-seed run, through the recipe a user runs, reproduces the numbers
recorded before a refactor (issue 17: "a refactor never changes a number silently").

Each algorithm trains 300 updates on one thread, eager (compile=false), on tiny real datasets built here, and
the test compares everything the run reports: the scores in summary.json, the last logged value of every
metric (losses, weights, Δr statistics) and a checksum of the final policy's parameters.

The numbers depend on the CPU's kernels (AVX2 and AVX-512 sum in different orders), so ``golden.json`` is
keyed by torch's CPU capability and version: on a recorded machine the match must be exact; elsewhere the
losses must agree to 1% (the same computation, other rounding) and the test says so. Record after a change
that is *meant* to change numbers, and say why in the commit:

    python -m tests.recipes.test_golden --record
"""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from .helpers import side_by_side

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden.json")
ALGOS = ("rgm", "smodice", "dwbc", "bc", "iql", "td3bc")
#: recipes/rgm_datasharing.py's algorithms (the shared-data variants), keyed ``sharing-<algo>``.
SHARING_ALGOS = ("rgm", "iql_shared", "iql_relabeled")
#: Further runs of recipes/rgm_mujoco.py by name: RGM with a tanh-Gaussian actor (its noise comes from the
#: update's own generator, so the entropy term is pinned too).
EXTRA_RUNS = {"rgm-stochastic": ["algo=rgm", "algo.actor=stochastic"]}
OVERRIDES = ["budget.discriminator_steps=30", "algo.batch_size=64", "algo.hidden=[32,32]", "eval.episodes=2",
             "eval.num_envs=2", "compile=false", "budget.updates=300", "eval.every=150", "checkpoint_every=150",
             "seed=3", "reward=partial", "precision=float32"]  # float32 on every CPU (auto is bf16 where native)
SUMMARY_KEYS = ("final_normalized_score", "best_normalized_score", "union_normalized_score",
                "expert_normalized_score", "updates", "top_decile_weight_share", "spearman_correction_vs_true")
BUILD = (
    "from tests.data.conftest import build_tiny\n"
    "build_tiny('rgm/hopper/medium-replay-v0', steps=1200, policy='actor', max_steps=80)\n"
    "build_tiny('rgm/hopper/expert-v0', steps=300, seed=3, policy='actor', max_steps=150)\n"
    "build_tiny('rgm/halfcheetah-run-forward/tiny-v0', steps=300, seed=1, env='halfcheetah-run-forward', max_steps=50)\n"
    "build_tiny('rgm/halfcheetah-jump/tiny-v0', steps=300, seed=2, env='halfcheetah-jump', max_steps=50, policy='actor')\n"
    "build_tiny('rgm/halfcheetah-run-backward/expert-v0', steps=200, seed=4, env='halfcheetah-run-backward', "
    "max_steps=100, policy='actor')\n"
)
SHARING_OVERRIDES = [*(o for o in OVERRIDES if o.split("=")[0] not in ("budget.updates", "eval.every",
                                                                        "checkpoint_every", "reward")),
                     "budget.updates=200", "eval.every=100", "checkpoint_every=100",
                     "dataset.sources=[halfcheetah-run-forward/tiny,halfcheetah-jump/tiny]", "dataset.unlabelled=[]",
                     "dataset.build_if_missing=false"]


def machine_key() -> str:
    """What the bits of a float32 run depend on here: torch's CPU kernels (capability) and version."""
    return f"{torch.backends.cpu.get_cpu_capability()}-torch{torch.__version__.split('+')[0]}"


def run_all(base: Path) -> dict:
    """Build the tiny datasets under ``base`` and run every algorithm; ``{algo: {name: value}}``.

    The runs are independent single-thread processes (their numbers do not depend on what runs beside them), so
    they run side by side, one per core.
    """
    environ = dict(os.environ, MINARI_DATASETS_PATH=str(base / "minari"), TORCHRL_RGM_CACHE=str(base / "cache"),
                   OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", BUILD], cwd=ROOT, env=environ, check=True, capture_output=True)
    mujoco, sharing = ROOT / "recipes" / "rgm_mujoco.py", ROOT / "recipes" / "rgm_datasharing.py"
    jobs = {algo: [mujoco, *OVERRIDES, f"algo={algo}"] for algo in ALGOS}
    jobs.update({name: [mujoco, *OVERRIDES, *overrides] for name, overrides in EXTRA_RUNS.items()})
    jobs.update({f"sharing-{algo}": [sharing, *SHARING_OVERRIDES, f"algo={algo}"] for algo in SHARING_ALGOS})

    def run(name):
        proc = subprocess.run([sys.executable, *map(str, jobs[name]), f"run_dir={base / name}"], cwd=ROOT,
                              env=environ, capture_output=True, text=True)
        assert proc.returncode == 0, f"{name}: {proc.stderr[-2000:]}"
        return read_run(base / name)

    return dict(zip(jobs, side_by_side(run, jobs)))


def read_run(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    values = {f"summary/{k}": summary[k] for k in SUMMARY_KEYS if k in summary}
    for source, stats in summary.get("per_source", {}).items():
        values.update({f"per_source/{source}/{k}": v for k, v in stats.items()})
    for path in sorted((run_dir / "logs").rglob("scalars/*.csv")):
        with path.open() as f:
            rows = list(csv.reader(f))
        values[f"log/{path.stem}"] = [float(rows[-1][0]), float(rows[-1][1])]
    actor = torch.load(run_dir / "policy.pt", weights_only=True)["actor"]
    values["policy/param_sum"] = float(sum(p.double().sum() for p in actor.values()))
    values["policy/param_abs_sum"] = float(sum(p.double().abs().sum() for p in actor.values()))
    return values


def _close(a, b, rel: float) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y, rel) for x, y in zip(a, b))
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b if rel == 0 else math.isclose(a, b, rel_tol=rel, abs_tol=1e-6)


@pytest.mark.skipif(not GOLDEN.exists(), reason="no golden.json: python -m tests.recipes.test_golden --record")
def test_every_algorithm_reproduces_its_golden_run(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    key = machine_key()
    exact = key in golden
    reference = golden[key] if exact else next(iter(golden.values()))
    got = run_all(tmp_path)
    bad = []
    assert set(got) == set(reference), set(got) ^ set(reference)
    for algo in reference:
        assert set(got[algo]) == set(reference[algo]), (algo, set(got[algo]) ^ set(reference[algo]))
        for name, want in reference[algo].items():
            if not exact and not name.startswith("log/loss"):
                continue  # scores and parameters amplify rounding through an environment: compared exactly only
            if not _close(got[algo][name], want, 0 if exact else 1e-2):
                bad.append(f"{algo} {name}: golden {want}, now {got[algo][name]}")
    assert not bad, (f"{'exact' if exact else 'approximate (no golden for ' + key + ')'} golden mismatch:\n"
                     + "\n".join(bad))


if __name__ == "__main__":
    if "--record" not in sys.argv:
        sys.exit("usage: python -m tests.recipes.test_golden --record")
    with tempfile.TemporaryDirectory() as tmp:
        values = run_all(Path(tmp))
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    golden[machine_key()] = values
    tmp_path = GOLDEN.with_suffix(".tmp")
    tmp_path.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    tmp_path.replace(GOLDEN)
    print(f"recorded {machine_key()} in {GOLDEN}")
