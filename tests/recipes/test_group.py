"""``seeds=[...]``: several runs of the recipe trained together by one vectorised update, each the run it would be
alone (its own directory, data order, evaluations, logs and checkpoint), interrupted and resumed as a group."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .helpers import run_recipe, run_recipes, tiny_datasets

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "rgm_mujoco.py"
# a tanh-Gaussian actor: the group must also give each run the actor noise it draws alone
TINY = ["budget.discriminator_steps=20", "algo.batch_size=64", "algo.hidden=[64,64]", "eval.episodes=2",
        "eval.num_envs=2", "compile=false", "algo.actor=stochastic", "reward=partial", "budget.updates=200",
        "eval.every=100", "checkpoint_every=100", "precision=float32"]  # the equality is a float32 claim


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("group")
    return tiny_datasets(base, ["'rgm/hopper/medium-replay-v0', steps=1500, policy='actor', max_steps=80",
                                "'rgm/hopper/expert-v0', steps=300, seed=3, policy='actor', max_steps=150"]), base


def run(environ, *overrides, check=True, **kwargs):
    return run_recipe(RECIPE, TINY, environ, *overrides, check=check, **kwargs)


def scores(run_dir: Path) -> list[float]:
    return [h["normalized_score"] for h in torch.load(run_dir / "checkpoint.pt", weights_only=True)["history"]]


def test_each_run_of_a_group_is_the_run_trained_alone(env):
    environ, base = env
    run_recipes(RECIPE, TINY, environ, ["seeds=[0,1]", f"run_dir='{base}/group-s{{seed}}'"],
                ["seed=1", f"run_dir={base}/alone-s1"])
    grouped, alone = base / "group-s1", base / "alone-s1"
    a, b = (json.loads((d / "summary.json").read_text()) for d in (grouped, alone))
    assert a["updates"] == b["updates"] == 200
    # float32 products batched over the runs round differently from one run's: equal to ~1e-6 per update
    assert scores(grouped) == pytest.approx(scores(alone), rel=1e-3)
    ha, hb = (torch.load(d / "checkpoint.pt", weights_only=True)["history"] for d in (grouped, alone))
    for key in ("loss_value", "loss_actor", "loss_reward_correction", "entropy_coef"):
        assert ha[-1][key] == pytest.approx(hb[-1][key], rel=1e-3, abs=1e-5), key
    for (k, v), v2 in zip(torch.load(grouped / "checkpoint.pt", weights_only=True)["networks"]["actor"].items(),
                          torch.load(alone / "checkpoint.pt", weights_only=True)["networks"]["actor"].values()):
        torch.testing.assert_close(v, v2, rtol=1e-3, atol=1e-4, msg=k)
    # the two runs of the group are two runs: their own seeds, data order and results
    assert scores(base / "group-s0") != scores(grouped)
    assert "seed: 0" in (base / "group-s0" / "config.yaml").read_text()
    assert "seeds: null" in (grouped / "config.yaml").read_text()  # each run resumes alone too


def test_a_killed_group_resumes_exactly(env):
    environ, base = env
    uninterrupted = base / "whole-s0"
    if not (uninterrupted / "summary.json").exists():
        run(environ, "seeds=[0,1]", f"run_dir='{base}/whole-s{{seed}}'")
    killed = [base / f"killed-s{s}" for s in (0, 1)]
    proc = subprocess.Popen([sys.executable, str(RECIPE), *TINY, "seeds=[0,1]", f"run_dir='{base}/killed-s{{seed}}'"],
                            cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not all((d / "checkpoint.pt").exists() for d in killed) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not any((d / "summary.json").exists() for d in killed), "the group finished before it could be killed"
    run(environ, "seeds=[0,1]", f"resume='{base}/killed-s{{seed}}'")
    for s, d in zip((0, 1), killed):
        whole = base / f"whole-s{s}"
        assert torch.load(d / "checkpoint.pt", weights_only=True)["history"] == \
            torch.load(whole / "checkpoint.pt", weights_only=True)["history"]


def test_runs_resumed_at_different_updates_catch_up_then_train_as_one_group(env):
    """Seed 0 stopped at 100 updates, seed 1 (continued alone) at 200: resumed as a group to 300, seed 0 trains alone
    in the group until it reaches 200, then both together; each ends as it would resumed alone."""
    environ, base = env
    run(environ, "seeds=[0,1]", "budget.updates=100", f"run_dir='{base}/catch-s{{seed}}'")
    run(environ, f"resume={base}/catch-s1", "budget.updates=200")  # seed 1 continued alone
    for s in (0, 1):
        shutil.copytree(base / f"catch-s{s}", base / f"ref-s{s}")
    out = run(environ, "seeds=[0,1]", f"resume='{base}/catch-s{{seed}}'", "budget.updates=300")
    assert "1 runs" in out.stderr and "2 runs" in out.stderr, out.stderr[-800:]  # seed 0 alone, then both
    run_recipes(RECIPE, TINY, environ, *([f"resume={base}/ref-s{s}", "budget.updates=300"] for s in (0, 1)))
    for s in (0, 1):
        grouped, alone = base / f"catch-s{s}", base / f"ref-s{s}"
        assert [h["step"] for h in torch.load(grouped / "checkpoint.pt", weights_only=True)["history"]] == \
            [100, 200, 300]
        assert scores(grouped) == pytest.approx(scores(alone), rel=1e-3)
        assert json.loads((grouped / "summary.json").read_text())["updates"] == 300


def test_runs_first_configured_with_different_budgets_are_refused_by_seed(env):
    """Δr's learning rate is rescaled to the budget a run was started with, and a longer resume keeps it: two such
    runs cannot share one update step, and the recipe says which seeds and what to do instead (no traceback)."""
    environ, base = env
    run_recipes(RECIPE, TINY, environ, ["seed=2", "budget.updates=100", f"run_dir={base}/lr-s2"],
                ["seed=3", f"run_dir={base}/lr-s3"])
    saved = {s: (base / f"lr-s{s}" / "config.yaml").read_text() for s in (2, 3)}
    out = run(environ, "seeds=[2,3]", f"resume='{base}/lr-s{{seed}}'", "budget.updates=300", check=False)
    assert out.returncode == 1 and "seeds [2, 3]" in out.stderr and "reward_correction.initial_lr" in out.stderr \
        and "Resume each alone with resume=<its directory>" in out.stderr, out.stderr[-800:]
    assert "Traceback" not in out.stderr
    assert torch.load(base / "lr-s2" / "checkpoint.pt", weights_only=True)["step"] == 100  # nothing trained
    # nor saved: resumed alone, each run still trains to the budget it had (the refused 300 is not kept)
    assert {s: (base / f"lr-s{s}" / "config.yaml").read_text() for s in (2, 3)} == saved


@pytest.mark.parametrize("overrides,message", [
    (["seeds=[0,1]", "algo=iql"], "seeds=[...] trains the runs with one vectorised update, which only"),
    (["seeds=[0,1]", "run_dir=/tmp/no-pattern"], "run_dir must name each run's directory with {seed}"),
    (["seeds=[0,0]"], "seeds must be a list of distinct integers"),
])
def test_a_group_that_cannot_be_trained_is_refused_before_any_work(env, overrides, message):
    environ, _ = env
    out = run(environ, *overrides, check=False)
    assert out.returncode == 1 and message in out.stderr, out.stderr[-800:]
    assert "Traceback" not in out.stderr
