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
#: ... and one for RGM as the paper sets it (the grid's rgm_bounded): with the default's anchored correction, sharp
#: discriminator and w-drawn extraction the group drifts past 1e-3 by 100 updates (measured: 1.1e-3 in the corrected
#: reward, 4e-3 with the penalty back at 10; open, docs/design.md). Added to every run of algo=rgm here.
RGM_BOUNDED = ["algo.correction_anchor=false", "algo.correction_zero_init=false", "algo.gradient_penalty=10",
               "algo.density_ratio_temperature=1.0", "algo.extraction_sampling=uniform", "algo.weight_clip=100"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("group")
    return tiny_datasets(base, ["'rgm/hopper/medium-replay-v0', steps=1500, policy='actor', max_steps=80",
                                "'rgm/hopper/expert-v0', steps=300, seed=3, policy='actor', max_steps=150"]), base


def run(environ, *overrides, check=True, **kwargs):
    bounded = [] if any(o.startswith("algo=") and o != "algo=rgm" for o in overrides) else RGM_BOUNDED
    return run_recipe(RECIPE, [*TINY, *bounded], environ, *overrides, check=check, **kwargs)


def scores(run_dir: Path) -> list[float]:
    return [h["normalized_score"] for h in torch.load(run_dir / "checkpoint.pt", weights_only=True)["history"]]


@pytest.mark.parametrize("actor", ["stochastic", "deterministic"])
def test_each_run_of_a_group_is_the_run_trained_alone(env, actor):
    """Issue 30 #5: the bound that holds, in float32: every logged metric of run 1 of a group agrees with the run
    trained alone to 5e-3 (1e-4 absolute, for metrics near 0) after 200 updates, for both actors. The update itself
    is the same computation (3e-8 after 100 updates on fixed batches, tests/test_vectorized.py); batched float32
    products round differently from one run's, and training amplifies that by a CPU-dependent factor (measured on an
    Intel Xeon: 2e-5 at 200 updates, 2e-3 at 300; on an AMD EPYC: 2.3e-3 in initial_value at 200, the same at the
    commit before RGM's default changed). Under bf16 autocast (precision=auto on a CPU with native bf16) the batched products
    round at bf16's 4e-3 at once: the recipe says so when a group starts, and no bound is claimed."""
    environ, base = env
    tag = f"{actor}-"
    run_recipes(RECIPE, [*TINY, *RGM_BOUNDED], environ, ["seeds=[0,1]", f"algo.actor={actor}", f"run_dir='{base}/{tag}group-s{{seed}}'"],
                ["seed=1", f"algo.actor={actor}", f"run_dir={base}/{tag}alone-s1"])
    grouped, alone = base / f"{tag}group-s1", base / f"{tag}alone-s1"
    a, b = (json.loads((d / "summary.json").read_text()) for d in (grouped, alone))
    assert a["updates"] == b["updates"] == 200
    assert scores(grouped) == pytest.approx(scores(alone), rel=1e-3)
    ha, hb = (torch.load(d / "checkpoint.pt", weights_only=True)["history"] for d in (grouped, alone))
    assert len(ha) == len(hb) == 2
    for ra, rb in zip(ha, hb):
        assert set(ra) == set(rb)
        far = {k: (ra[k], rb[k]) for k in ra if isinstance(ra[k], float) and ra[k] != pytest.approx(rb[k], rel=5e-3,
                                                                                                     abs=1e-4)}
        assert not far, (ra["step"], far)
    for (k, v), v2 in zip(torch.load(grouped / "checkpoint.pt", weights_only=True)["networks"]["actor"].items(),
                          torch.load(alone / "checkpoint.pt", weights_only=True)["networks"]["actor"].values()):
        torch.testing.assert_close(v, v2, rtol=1e-3, atol=1e-4, msg=k)
    if actor == "deterministic":
        return
    # the two runs of the group are two runs: their own seeds, data order and results
    assert scores(base / f"{tag}group-s0") != scores(grouped)
    assert "seed: 0" in (base / f"{tag}group-s0" / "config.yaml").read_text()
    assert "seeds: null" in (grouped / "config.yaml").read_text()  # each run resumes alone too


def test_a_killed_group_resumes_exactly(env):
    environ, base = env
    uninterrupted = base / "whole-s0"
    if not (uninterrupted / "summary.json").exists():
        run(environ, "seeds=[0,1]", f"run_dir='{base}/whole-s{{seed}}'")
    killed = [base / f"killed-s{s}" for s in (0, 1)]
    proc = subprocess.Popen([sys.executable, str(RECIPE), *TINY, *RGM_BOUNDED, "seeds=[0,1]", f"run_dir='{base}/killed-s{{seed}}'"],
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
    run_recipes(RECIPE, [*TINY, *RGM_BOUNDED], environ, *([f"resume={base}/ref-s{s}", "budget.updates=300"] for s in (0, 1)))
    for s in (0, 1):
        grouped, alone = base / f"catch-s{s}", base / f"ref-s{s}"
        assert [h["step"] for h in torch.load(grouped / "checkpoint.pt", weights_only=True)["history"]] == \
            [100, 200, 300]
        # 300 updates: float32 rounding of the batched products has grown to ~1e-3 in the metrics and an evaluation
        # through the environment amplifies it (measured: 3e-3 in a score); a wrong catch-up (updates skipped or
        # repeated, a schedule off) moves scores by tens of percent
        assert scores(grouped) == pytest.approx(scores(alone), rel=1e-2)
        assert json.loads((grouped / "summary.json").read_text())["updates"] == 300


def test_runs_first_configured_with_different_budgets_are_refused_by_seed(env):
    """Δr's learning rate is rescaled to the budget a run was started with, and a longer resume keeps it: two such
    runs cannot share one update step, and the recipe says which seeds and what to do instead (no traceback)."""
    environ, base = env
    run_recipes(RECIPE, [*TINY, *RGM_BOUNDED], environ, ["seed=2", "budget.updates=100", f"run_dir={base}/lr-s2"],
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
