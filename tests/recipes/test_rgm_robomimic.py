"""The robomimic recipe run for real in a subprocess on tiny generated Lift files. ``pytest -k robomimic``."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import requires

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "rgm_robomimic.py"
TINY = ["budget.discriminator_steps=20", "algo.hidden=[64,64]", "eval.episodes=2", "eval.num_envs=2",
        "env.horizon=30", "dataset.n_expert_trajectories=2", "compile=false", "budget.updates=40", "eval.every=20",
        "checkpoint_every=20", "dataset.build_ph_episodes=3", "dataset.build_mg_episodes=4"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    requires("robosuite")
    base = tmp_path_factory.mktemp("robomimic_recipe")
    environ = dict(os.environ, TORCHRL_RGM_ROBOMIMIC_DATA=str(base / "data"), TORCHRL_RGM_CACHE=str(base / "cache"),
                   OMP_NUM_THREADS="1")
    return environ, base


def run(environ, *overrides, check=True):
    return subprocess.run([sys.executable, str(RECIPE), *TINY, *overrides], cwd=ROOT, env=environ,
                          capture_output=True, text=True, check=check)


def test_robomimic_recipe_generates_data_trains_and_reports(env):
    environ, base = env
    run_dir = base / "rgm"
    out = run(environ, f"run_dir={run_dir}")
    assert "generating lift ['mg', 'ph']" in out.stdout  # build_if_missing: the files did not exist
    for d, name in (("ph", "low_dim.hdf5"), ("mg", "low_dim_sparse.hdf5")):
        assert (base / "data" / "lift" / d / name).stat().st_size > 0
    for name in ("config.yaml", "summary.json", "learning_curve.png", "reward_correction.png", "policy.pt",
                 "checkpoint.pt"):
        assert (run_dir / name).stat().st_size > 0, name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["updates"] == 40 and summary["expert_normalized_score"] == 100.0  # ph demos all succeed
    assert 0.0 <= summary["final_success_rate"] <= 1.0
    assert math.isclose(summary["final_normalized_score"], 100 * summary["final_success_rate"])
    assert "final success rate" in out.stdout
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert [h["step"] for h in ckpt["history"]] == [20, 40] and all("success_rate" in h for h in ckpt["history"])
    cfg = (run_dir / "config.yaml").read_text()
    assert "divergence: chi2" in cfg and "batch_size: 100" in cfg and "alpha: 2.0" in cfg


@pytest.mark.parametrize("algo", ["bc", "iql"])
def test_robomimic_recipe_baselines(env, algo):
    environ, base = env
    run(environ, f"run_dir={base / 'rgm-for-data'}", check=False)  # makes sure the files exist
    run_dir = base / algo
    run(environ, f"algo={algo}", f"run_dir={run_dir}")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["updates"] == 40 and 0.0 <= summary["final_success_rate"] <= 1.0
    assert "spearman_corrected_vs_true" not in summary  # no reward correction in a baseline


def test_robomimic_recipe_config_errors(env, tmp_path):
    environ, base = env
    out = run(environ, "env.name=kitchen", f"run_dir={tmp_path / 'a'}", check=False)
    assert out.returncode != 0 and "Unknown robomimic task (env.name) 'kitchen'" in out.stderr
    assert "['can', 'lift']" in out.stderr
    bad = tmp_path / "bad.hdf5"
    bad.write_text("not hdf5")
    out = run(environ, f"dataset.union_path={bad}", f"run_dir={tmp_path / 'b'}", check=False)
    assert out.returncode != 0 and f"{bad} is not a readable HDF5 file" in out.stderr
    missing = tmp_path / "nowhere.hdf5"
    out = run(environ, f"dataset.expert_path={missing}", f"run_dir={tmp_path / 'c'}", check=False)
    assert out.returncode != 0 and f"robomimic file {missing} does not exist" in out.stderr
