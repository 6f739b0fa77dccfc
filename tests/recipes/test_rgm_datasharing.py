"""recipes/rgm_datasharing.py run for real in a subprocess on tiny local datasets of the halfcheetah family."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "rgm_datasharing.py"
TINY = ["budget.discriminator_steps=20", "algo.batch_size=64", "algo.hidden=[64,64]", "eval.episodes=2",
        "eval.num_envs=2", "compile=false", "budget.updates=40", "eval.every=20", "checkpoint_every=20",
        "dataset.sources=[halfcheetah-run-forward/tiny,halfcheetah-jump/tiny]",
        "dataset.unlabelled=[halfcheetah-run-backward/tiny]", "dataset.build_if_missing=false"]
SOURCES = ["halfcheetah-run-forward/tiny", "halfcheetah-jump/tiny", "halfcheetah-run-backward/tiny (unlabelled)",
           "halfcheetah-run-backward expert (1 traj.)"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("sharing")
    environ = dict(os.environ, MINARI_DATASETS_PATH=str(base / "minari"), TORCHRL_RGM_CACHE=str(base / "cache"))
    code = (
        "from tests.data.conftest import build_tiny\n"
        "build_tiny('rgm/halfcheetah-run-forward/tiny-v0', steps=400, seed=1, env='halfcheetah-run-forward', max_steps=50)\n"
        "build_tiny('rgm/halfcheetah-jump/tiny-v0', steps=400, seed=2, env='halfcheetah-jump', max_steps=50, policy='actor')\n"
        "build_tiny('rgm/halfcheetah-run-backward/tiny-v0', steps=300, seed=3, env='halfcheetah-run-backward', max_steps=50)\n"
        "build_tiny('rgm/halfcheetah-run-backward/expert-v0', steps=200, seed=4, env='halfcheetah-run-backward', "
        "max_steps=100, policy='actor')\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ, check=True, capture_output=True)
    return environ, base


def run(environ, *overrides, check=True):
    return subprocess.run([sys.executable, str(RECIPE), *TINY, *overrides], cwd=ROOT, env=environ,
                          capture_output=True, text=True, check=check)


@pytest.mark.parametrize("algo", ["rgm", "smodice", "bc", "iql_shared", "iql_relabeled"])
def test_every_algorithm_runs_and_reports_per_source(env, algo):
    environ, base = env
    run_dir = base / algo
    out = run(environ, f"run_dir={run_dir}", f"algo={algo}")
    assert "target halfcheetah-run-backward" in out.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert math.isfinite(summary["final_normalized_score"]) and summary["updates"] == 40
    per_source = summary["per_source"]
    assert list(per_source) == SOURCES
    assert (run_dir / "sources.png").stat().st_size > 0
    for name, row in per_source.items():
        assert row["transitions"] > 0
        if algo == "iql_relabeled":  # the oracle sees the target's reward everywhere
            assert row["reward_seen"] == pytest.approx(row["target_reward"], rel=1e-3, abs=1e-3)
        if algo in ("rgm", "smodice"):
            assert row["visitation_weight"] > 0
        assert ("corrected_reward" in row) == (algo == "rgm")
    if algo == "iql_shared":  # each source keeps its own task's reward; unlabelled data reads 0
        assert per_source[SOURCES[2]]["reward_seen"] == pytest.approx(0.0, abs=1e-5)
        assert per_source[SOURCES[0]]["reward_seen"] != pytest.approx(per_source[SOURCES[0]]["target_reward"], abs=1e-3)
    if algo == "rgm":
        assert (run_dir / "reward_correction.png").stat().st_size > 0
    assert torch.load(run_dir / "policy.pt", weights_only=True)["obs_mean"].shape == (17,)


@pytest.mark.parametrize("overrides,message", [
    (["env.name=halfcheetah-fly"], "Unknown target task (env.name) 'halfcheetah-fly'"),
    (["dataset.source_level=hard"], "Unknown source level 'hard'"),
    (["dataset.sources=hopper/medium"], "dataset.sources must be a list"),
])
def test_bad_config_is_refused_by_validation(overrides, message):
    from hydra import compose, initialize_config_dir

    from torchrl_rgm.config import ConfigError
    from torchrl_rgm.run import validate

    with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base=None):
        cfg = compose(config_name="rgm_datasharing", overrides=overrides)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(cfg)


def test_relabelling_is_refused_outside_data_sharing():
    from hydra import compose, initialize_config_dir

    from torchrl_rgm.config import ConfigError
    from torchrl_rgm.run import validate

    with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base=None):
        cfg = compose(config_name="rgm_mujoco", overrides=["algo=iql_relabeled"])
    with pytest.raises(ConfigError, match="rgm_datasharing.py"):
        validate(cfg)


def test_bad_input_is_one_clear_error(env):
    environ, base = env
    out = run(environ, f"run_dir={base / 'no-expert'}", "env.name=halfcheetah-jump", check=False)
    assert out.returncode != 0
    assert "The target task 'halfcheetah-jump' has no expert data" in out.stderr
    out = run(environ, f"run_dir={base / 'hopper'}", "dataset.sources=[hopper/medium]", check=False)
    assert out.returncode != 0 and "rgm/hopper/medium-v0" in out.stderr


def test_missing_datasets_without_policies_are_refused_before_building(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    from torchrl_rgm.config import ConfigError
    from torchrl_rgm.sources import make_source
    from torchrl_rgm.generation import behaviour

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setattr(behaviour, "POLICY_DIR", tmp_path / "no-policies")
    with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base=None):
        cfg = compose(config_name="rgm_datasharing", overrides=["env.name=walker2d-run-forward"])
    with pytest.raises(ConfigError, match="rgm/walker2d-run-backward/\\['medium'\\] are not built and "
                                             "walker2d-run-backward has no shipped behaviour policies"):
        make_source(cfg).load()
    assert not (tmp_path / "minari" / "rgm").exists()  # nothing was built
