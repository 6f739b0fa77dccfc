"""Golden runs: every algorithm's short fixed-seed run, through the recipe a user runs, reproduces the numbers
recorded before a refactor (issue 17: "a refactor never changes a number silently").

Each algorithm trains 300 updates on one thread, eager (compile=false), on tiny real datasets built here, and
the test compares everything the run reports: the scores in summary.json, the last logged value of every
metric (losses, weights, Δr statistics) and a checksum of the final policy's parameters.

Two tests, so that the suite passes on every CPU without loosening what it catches where it was recorded:

- **exact**, on the machine that recorded it: 300 updates through an environment amplify the last-bit differences
  of another CPU's kernels (AVX2 and AVX-512 sum in other orders; one AVX-512 model's oneDNN blocking differs from
  another's) to percents, so ``golden.json`` holds them per machine — torch's CPU capability, the CPU model,
  torch's version and MuJoCo's (:func:`machine_key`) — and there they must match bit for bit. Elsewhere this test is skipped.
- **portable**, on every machine: the same runs' first :data:`~tests.recipes.golden_first_updates.UPDATES` updates
  (data, networks, the discriminator's pre-training, then the updates) must match ``golden.json["portable-mujoco<version>"]`` to
  :data:`PORTABLE_RTOL`, per MuJoCo version (:func:`portable_key`; the package pins MuJoCo). The datasets are
  built with uniform actions (numpy's generator and MuJoCo: the same bytes
  on every x86 CPU; a torch policy's actions would differ in their last bits and the episodes diverge), and so few
  updates keep rounding far below the tolerance (measured: at most 7e-7 between torch's AVX2 and AVX-512 kernels
  on one Xeon, ATEN_CPU_CAPABILITY=avx2 against its default).

Record after a change that is *meant* to change numbers, and say why in the commit; on a new machine, record its
exact golden the same way (the portable one must already pass there):

    python -m tests.recipes.test_golden --record
"""
from __future__ import annotations

import csv
import json
import math
import os
import platform
import re
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
#: Uniform actions only: the same dataset bytes on every CPU (see the module's docstring).
BUILD = (
    "from tests.data.conftest import build_tiny\n"
    "build_tiny('rgm/hopper/medium-replay-v0', steps=1200, max_steps=80)\n"
    "build_tiny('rgm/hopper/expert-v0', steps=300, seed=3, max_steps=150)\n"
    "build_tiny('rgm/halfcheetah-run-forward/tiny-v0', steps=300, seed=1, env='halfcheetah-run-forward', max_steps=50)\n"
    "build_tiny('rgm/halfcheetah-jump/tiny-v0', steps=300, seed=2, env='halfcheetah-jump', max_steps=50)\n"
    "build_tiny('rgm/halfcheetah-run-backward/expert-v0', steps=200, seed=4, env='halfcheetah-run-backward', "
    "max_steps=100)\n"
)
#: The portable golden's tolerance (relative; 1e-6 absolute).
PORTABLE_RTOL = 1e-4
PORTABLE = "portable"
SHARING_OVERRIDES = [*(o for o in OVERRIDES if o.split("=")[0] not in ("budget.updates", "eval.every",
                                                                        "checkpoint_every", "reward")),
                     "budget.updates=200", "eval.every=100", "checkpoint_every=100",
                     "dataset.sources=[halfcheetah-run-forward/tiny,halfcheetah-jump/tiny]", "dataset.unlabelled=[]",
                     "dataset.build_if_missing=false"]


def machine_key() -> str:
    """What the bits of a float32 run depend on here: torch's CPU kernels (capability), the CPU model (its cache
    sizes and instructions pick oneDNN's blocking), torch's version and MuJoCo's (it simulates the datasets)."""
    model = re.sub(r"[^A-Za-z0-9]+", "_", cpu_model()).strip("_")
    return f"{torch.backends.cpu.get_cpu_capability()}-{model}-torch{torch.__version__.split('+')[0]}-mujoco{mujoco_version()}"


def portable_key() -> str:
    """The portable golden's key: the datasets are MuJoCo's, so another MuJoCo gives other data (measured: 4.0.1
    against 3.3.7 moves the tiny expert set's score from 16.788 to 16.768 and every number after it)."""
    return f"{PORTABLE}-mujoco{mujoco_version()}"


def mujoco_version() -> str:
    import mujoco

    return mujoco.__version__


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_all(base: Path) -> dict:
    """Build the tiny datasets under ``base`` and run every algorithm; ``{algo: {name: value}}``.

    The runs are independent single-thread processes (their numbers do not depend on what runs beside them), so
    they run side by side, one per core.
    """
    environ = build(base)
    todo = jobs()

    def run(name):
        config, overrides = todo[name]
        proc = subprocess.run([sys.executable, str(ROOT / "recipes" / f"{config}.py"), *overrides,
                               f"run_dir={base / name}"], cwd=ROOT, env=environ, capture_output=True, text=True)
        assert proc.returncode == 0, f"{name}: {proc.stderr[-2000:]}"
        return read_run(base / name)

    return dict(zip(todo, side_by_side(run, todo)))


def jobs() -> dict[str, tuple[str, list[str]]]:
    """Every golden run: ``{name: (recipe's config name, overrides)}``."""
    out = {algo: ("rgm_mujoco", [*OVERRIDES, f"algo={algo}"]) for algo in ALGOS}
    out.update({name: ("rgm_mujoco", [*OVERRIDES, *overrides]) for name, overrides in EXTRA_RUNS.items()})
    out.update({f"sharing-{algo}": ("rgm_datasharing", [*SHARING_OVERRIDES, f"algo={algo}"]) for algo in SHARING_ALGOS})
    return out


def build(base: Path) -> dict:
    """The tiny datasets under ``base``; the environment runs there use (one thread)."""
    environ = dict(os.environ, MINARI_DATASETS_PATH=str(base / "minari"), TORCHRL_RGM_CACHE=str(base / "cache"),
                   OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if not (base / "minari").exists():
        subprocess.run([sys.executable, "-c", BUILD], cwd=ROOT, env=environ, check=True, capture_output=True)
    return environ


def run_first_updates(base: Path) -> dict:
    """:mod:`tests.recipes.golden_first_updates` in a fresh process: ``{job: {metric: value}}``."""
    proc = subprocess.run([sys.executable, "-m", "tests.recipes.golden_first_updates", str(base)], cwd=ROOT,
                          env=build(base), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("GOLDEN-JSON "))
    return json.loads(line.removeprefix("GOLDEN-JSON "))


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


def _load_golden() -> dict:
    if not GOLDEN.exists():
        pytest.skip("no golden.json: python -m tests.recipes.test_golden --record")
    return json.loads(GOLDEN.read_text())


def test_every_algorithm_reproduces_its_golden_run(tmp_path):
    """Exact, on the machine that recorded it (300 updates; see the module's docstring)."""
    golden, key = _load_golden(), machine_key()
    if key not in golden:
        exact = sorted(k for k in golden if not k.startswith(PORTABLE))
        pytest.skip(f"no exact golden for {key} (recorded: {exact}); the portable "
                    "golden test checks this machine; record one here with python -m tests.recipes.test_golden --record")
    reference = golden[key]
    got = run_all(tmp_path)
    assert set(got) == set(reference), set(got) ^ set(reference)
    bad = []
    for algo in reference:
        assert set(got[algo]) == set(reference[algo]), (algo, set(got[algo]) ^ set(reference[algo]))
        bad += [f"{algo} {name}: golden {want}, now {got[algo][name]}" for name, want in reference[algo].items()
                if not _close(got[algo][name], want, 0)]
    assert not bad, f"exact golden mismatch on {key}:\n" + "\n".join(bad)


def test_first_updates_match_the_portable_golden_on_every_cpu(tmp_path):
    """Every machine: each golden run's data, networks, discriminator and first updates to PORTABLE_RTOL."""
    golden, key = _load_golden(), portable_key()
    recorded = sorted(k for k in golden if k.startswith(PORTABLE))
    assert recorded, "golden.json has no portable golden: python -m tests.recipes.test_golden --record"
    if key not in golden:
        pytest.skip(f"the portable golden was recorded with {recorded}, this is {key}: another MuJoCo simulates other "
                    "datasets; install the pinned one (pip install -e .) or record here with "
                    "python -m tests.recipes.test_golden --record")
    reference, got = golden[key], run_first_updates(tmp_path)
    assert set(got) == set(reference), set(got) ^ set(reference)
    bad = []
    for job in reference:
        assert set(got[job]) == set(reference[job]), (job, set(got[job]) ^ set(reference[job]))
        bad += [f"{job} {name}: golden {want}, now {got[job][name]}" for name, want in reference[job].items()
                if not _close(got[job][name], want, PORTABLE_RTOL)]
    assert not bad, f"portable golden mismatch on {machine_key()} (rtol {PORTABLE_RTOL}):\n" + "\n".join(bad)


def test_the_portable_golden_holds_under_torch_s_avx2_kernels(tmp_path):
    """What an AVX2 machine (the CI's other CPU) computes, here: torch's AVX2 kernels forced
    (``ATEN_CPU_CAPABILITY=avx2``, oneDNN and MKL held to AVX2) must still pass the portable golden."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AMX", "AVX512_BF16"):
        pytest.skip(f"this CPU's kernels are {torch.backends.cpu.get_cpu_capability()}: the portable test ran on them")
    environ = dict(os.environ, ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path),
                           f"{Path(__file__)}::test_first_updates_match_the_portable_golden_on_every_cpu"],
                          cwd=ROOT, env=environ, capture_output=True, text=True)
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-3000:]


if __name__ == "__main__":
    if "--record" not in sys.argv:
        sys.exit("usage: python -m tests.recipes.test_golden --record")
    with tempfile.TemporaryDirectory() as tmp:
        values = run_all(Path(tmp))
        first = run_first_updates(Path(tmp))
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    golden[machine_key()] = values
    golden[portable_key()] = first
    tmp_path = GOLDEN.with_suffix(".tmp")
    tmp_path.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    tmp_path.replace(GOLDEN)
    print(f"recorded {machine_key()} in {GOLDEN}")
