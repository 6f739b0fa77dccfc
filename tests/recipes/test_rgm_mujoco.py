"""The recipe the user runs, run for real in a subprocess on tiny local datasets (CleanRL style)."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from torchrl_rgm.config import resolve_precision

from .helpers import run_recipe, run_recipes, tiny_datasets

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "rgm_mujoco.py"
TINY = ["budget.discriminator_steps=20", "algo.batch_size=64", "algo.hidden=[64,64]", "eval.episodes=2",
        "eval.num_envs=2", "compile=false"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("recipe")
    return tiny_datasets(base, ["'rgm/hopper/medium-replay-v0', steps=1500, policy='actor', max_steps=80",
                                "'rgm/hopper/expert-v0', steps=300, seed=3, policy='actor', max_steps=150"]), base


def run(environ, *overrides, check=True, **kwargs):
    return run_recipe(RECIPE, TINY, environ, *overrides, check=check, **kwargs)


def test_smoke_run_writes_every_output(env):
    environ, base = env
    run_dir = base / "smoke"
    out = run(environ, f"run_dir={run_dir}", "budget.updates=60", "eval.every=30", "checkpoint_every=30")
    for name in ("config.yaml", "summary.json", "learning_curve.png", "reward_correction.png", "policy.pt",
                 "checkpoint.pt"):
        assert (run_dir / name).stat().st_size > 0, name
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("final_normalized_score", "best_normalized_score", "union_normalized_score",
                "expert_normalized_score", "wall_time_s", "updates_per_s", "discriminator_s", "peak_memory_mb"):
        assert isinstance(summary[key], float) and math.isfinite(summary[key]), key
    # precision=auto: bfloat16 where the CPU computes it natively, float32 elsewhere
    assert summary["precision"] == resolve_precision("auto", "cpu") and summary["peak_memory_mb"] > 100
    assert summary["run_dir"] == str(run_dir) and summary["updates"] == 60
    assert "final normalised score" in out.stdout
    csvs = list((run_dir / "logs").rglob("*.csv"))
    assert csvs and any("normalized_score" in p.name for p in csvs)
    policy = torch.load(run_dir / "policy.pt", weights_only=True)
    assert "actor" in policy and policy["obs_mean"].shape == (11,)
    # the evaluation closest to the demonstration: its actor kept, its update and score in the summary
    errors = {int(step): float(v) for step, v in (line.split(",") for line in next(
        (run_dir / "logs").rglob("demonstration_action_error.csv")).read_text().split())}
    assert sorted(errors) == [30, 60] and all(v >= 0 for v in errors.values())
    selected = torch.load(run_dir / "selected_policy.pt", weights_only=True)
    assert selected["step"] == summary["selected_step"] == min(errors, key=errors.get)
    assert summary["selected_demonstration_action_error"] == pytest.approx(min(errors.values()))
    assert selected["actor"].keys() == policy["actor"].keys() and "closest to the demo" in out.stdout


def test_a_run_that_builds_its_datasets_trains_with_the_threads_the_environment_asks_for(tmp_path):
    """A fresh machine: the recipe builds its datasets in its own process (one thread each), then trains with
    OMP_NUM_THREADS, not the build's one thread."""
    environ = dict(os.environ, MINARI_DATASETS_PATH=str(tmp_path / "minari"), TORCHRL_RGM_CACHE=str(tmp_path / "cache"),
                   OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")  # both: under pytest -n the suite sets them to 1
    out = run(environ, f"run_dir={tmp_path / 'run'}", "dataset.namespace=rgm-threads", "dataset.build_scale=0.005",
              "budget.updates=20", "eval.every=20", "eval.episodes=1")
    assert "building ['rgm-threads/hopper/expert-v0', 'rgm-threads/hopper/medium-replay-v0']" in out.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["torch_threads"] == 2 and "2 threads" in out.stdout


@pytest.mark.parametrize("extraction", ["uniform", "weighted"])
def test_sigkill_then_resume_equals_uninterrupted(env, extraction):
    """Exact resume; with weighted extraction the weights refreshed at update 100 (between two checkpoints) come
    back with the checkpoint of update 150."""
    environ, base = env
    common = ["budget.updates=600", "eval.every=150", "checkpoint_every=150", "seed=7",
              f"algo.extraction_sampling={extraction}", "algo.extraction_refresh=100"]
    base = base / extraction
    whole = base / "whole"
    run(environ, f"run_dir={whole}", *common)
    killed = base / "killed"
    proc = subprocess.Popen([sys.executable, str(RECIPE), *TINY, f"run_dir={killed}", *common], cwd=ROOT,
                            env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"
    state = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert 0 < state["step"] < 600
    run(environ, f"resume={killed}")
    a = json.loads((whole / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert a["final_normalized_score"] == b["final_normalized_score"]
    assert a["best_normalized_score"] == b["best_normalized_score"]
    ha = torch.load(whole / "checkpoint.pt", weights_only=True)
    hb = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert ha["history"] == hb["history"]  # identical on CPU, every logged metric included
    for (k, v), (k2, v2) in zip(ha["networks"]["actor"].items(), hb["networks"]["actor"].items()):
        assert k == k2 and torch.equal(v, v2)


@pytest.mark.parametrize(
    "override,message",
    [
        ("env.name=pong", "Unknown env 'pong'; valid choices are ['halfcheetah', 'hopper', 'walker2d']"),
        ("reward.name=inverted", "Unknown reward setting 'inverted'; valid choices are"),
        ("dataset.union=hard", "Unknown dataset level 'hard'"),
        ("algo.divergence=js", "Unknown divergence 'js'; valid choices are ['chi2', 'kl', 'kl_logmeanexp', 'soft_chi2']"),
        ("algo.alpha=0", "algo.alpha must be > 0"),
        ("algo.gamma=1.0", "algo.gamma must lie in (0, 1)"),
        ("budget.updates=-5", "budget.updates must be > 0"),
        ("logger.backend=mlflow", "Unknown logger backend"),
        ("compile=maybe", "Unknown compile 'maybe'"),
        ("algo.correction_lr=-1", "algo.correction_lr must be > 0 or null"),
        ("algo.extraction_sampling=importance", "Unknown algo.extraction_sampling 'importance'; valid choices are"),
        ("algo.extraction_refresh=0", "algo.extraction_refresh must be a positive number of updates"),
        ("algo.weight_clip=0", "algo.weight_clip must be > 0, or null for unclipped weights"),
        ("algo.initial_states=replay", "Unknown algo.initial_states 'replay'; valid choices are ['expert', 'union']"),
        ("algo.extraction_average=maybe", "algo.extraction_average must be true or false"),
        ("algo.initial_states=expert", None),
        ("algo=bc", None),
    ],
)
def test_bad_config_is_refused_by_validation(override, message):
    from hydra import compose, initialize_config_dir

    from torchrl_rgm.config import ConfigError
    from torchrl_rgm.run import validate

    with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base=None):
        cfg = compose(config_name="rgm_mujoco", overrides=[override])
    if message is None:  # a valid override passes
        validate(cfg)
        return
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value)


def test_bad_input_fails_before_any_work(env):
    environ, base = env
    run_dir = base / "bad"
    out = run(environ, f"run_dir={run_dir}", "algo.alpha=-1", check=False)
    assert out.returncode != 0 and "algo.alpha must be > 0" in out.stderr
    assert not run_dir.exists()
    out = run(environ, f"run_dir={run_dir}", "env=pong", check=False)
    assert out.returncode != 0 and "env/pong" in out.stdout + out.stderr


def test_batch_larger_than_the_union_is_refused(env):
    environ, base = env
    out = run(environ, f"run_dir={base / 'big'}", "algo.batch_size=100000", "budget.updates=5", check=False)
    assert out.returncode != 0 and "larger than the union" in out.stderr


def test_existing_run_dir_is_never_overwritten(env):
    environ, base = env
    run_dir = base / "taken"
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("mine")
    out = run(environ, f"run_dir={run_dir}", "budget.updates=5", check=False)
    assert out.returncode != 0 and "exists and is not empty" in out.stderr
    assert (run_dir / "keep.txt").read_text() == "mine" and len(list(run_dir.iterdir())) == 1


@pytest.mark.parametrize("backend", ["csv", "tensorboard"])
def test_loggers_write_real_files(tmp_path, backend):
    from omegaconf import OmegaConf

    from torchrl_rgm.run import log_metrics, make_logger

    cfg = OmegaConf.create({"logger": {"backend": backend, "project": "p", "offline": True}})
    logger = make_logger(cfg, tmp_path)
    log_metrics(logger, {"step": 5, "normalized_score": 42.0, "loss_value": float("nan")}, 5)
    files = [p for p in (tmp_path / "logs").rglob("*") if p.is_file()]
    assert files, backend
    if backend == "csv":
        text = "".join(p.read_text() for p in files)
        assert "42.0" in text and "loss_value" not in "".join(p.name for p in files)


@pytest.mark.parametrize("backend", ["csv", "tensorboard"])
def test_a_resumed_run_logs_each_step_once(tmp_path, backend):
    """Killed after logging steps 100-300 with its checkpoint at 200: the resumed run logs 300 again, and the logs
    (read back by TensorBoard's own reader for TensorBoard) hold 300 once, with the resumed value."""
    from omegaconf import OmegaConf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from torchrl_rgm.run import log_metrics, make_logger

    cfg = OmegaConf.create({"logger": {"backend": backend, "project": "p", "offline": True}})
    first = make_logger(cfg, tmp_path)
    for step in (100, 200, 300):
        log_metrics(first, {"normalized_score": float(step)}, step)
    if backend == "tensorboard":
        first.experiment.close()
    resumed = make_logger(cfg, tmp_path, resumed_at=200)
    for step in (300, 400):
        log_metrics(resumed, {"normalized_score": -float(step)}, step)
    if backend == "csv":
        [path] = (tmp_path / "logs").rglob("normalized_score.csv")
        rows = [line.split(",") for line in path.read_text().split()]
        logged = [(int(float(step)), float(value)) for step, value in rows]
    else:
        resumed.experiment.close()
        acc = EventAccumulator(resumed.experiment.log_dir)
        acc.Reload()
        logged = [(e.step, e.value) for e in acc.Scalars("normalized_score")]
    assert logged == [(100, 100.0), (200, 200.0), (300, -300.0), (400, -400.0)]


@pytest.mark.parametrize("option,name", [("true_reward", "true"), ("negated", "negated"), ("partial", "partial"),
                                         ("zero", "zero"), ("sparse", "sparse"), ("noisy", "noisy"),
                                         ("other_task", "other_task")])
def test_every_reward_option_composes_and_validates(option, name):
    from hydra import compose, initialize_config_dir

    from torchrl_rgm.run import validate

    with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base=None):
        cfg = compose(config_name="rgm_mujoco", overrides=[f"reward={option}", "env=walker2d", "algo=bc"])
    validate(cfg)
    assert cfg.reward.name == name and cfg.env.stochastic_actor


@pytest.mark.parametrize("algo", ["smodice", "dwbc", "iql", "td3bc"])
def test_baselines_run_end_to_end_and_only_reward_based_ones_read_the_reward(env, algo):
    # Same seed, negated vs true reward: bc/smodice/dwbc must not notice; IQL and TD3+BC must.
    environ, base = env
    run_dirs = {reward: base / f"{algo}-{reward}" for reward in ("negated", "true_reward")}
    run_recipes(RECIPE, TINY, environ, *([f"run_dir={run_dir}", f"algo={algo}", f"reward={reward}", "budget.updates=40",
                                          "eval.every=20", "checkpoint_every=20"] for reward, run_dir in run_dirs.items()))
    histories = []
    for run_dir in run_dirs.values():
        summary = json.loads((run_dir / "summary.json").read_text())
        assert math.isfinite(summary["final_normalized_score"]) and summary["updates"] == 40
        assert (run_dir / "policy.pt").stat().st_size > 0
        histories.append(torch.load(run_dir / "checkpoint.pt", weights_only=True)["history"])
    if algo in ("smodice", "dwbc"):
        assert histories[0] == histories[1]
    else:
        assert histories[0] != histories[1]


@pytest.mark.parametrize("overrides,message", [
    (["algo=iql", "algo.actor=deterministic"], "algo=iql needs a stochastic actor"),
    (["algo=td3bc", "algo.actor=stochastic"], "algo=td3bc needs a deterministic actor"),
    (["algo.actor=gaussian"], "Unknown algo.actor 'gaussian'"),
    (["algo=ppo"], "algo/ppo"),
])
def test_baseline_config_errors(overrides, message):
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from torchrl_rgm.config import ConfigError
    from torchrl_rgm.run import validate

    with pytest.raises((ConfigError, HydraException)) as err:
        with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base=None):
            validate(compose(config_name="rgm_mujoco", overrides=overrides))
    assert message in str(err.value)


def test_algorithm_choices_follow_the_papers():
    from hydra import compose, initialize_config_dir

    from torchrl_rgm.algorithms import get_algorithm

    with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base=None):
        cfgs = {a: compose(config_name="rgm_mujoco", overrides=[f"algo={a}", "env=walker2d"])
                for a in ("rgm", "smodice", "dwbc", "bc", "iql", "td3bc")}
    assert [get_algorithm(a).stochastic_actor(cfgs[a]) for a in ("rgm", "iql", "td3bc")] == [True, True, False]
    assert cfgs["smodice"].algo.alpha == 1.0 and cfgs["rgm"].algo.alpha == cfgs["rgm"].env.alpha
    assert cfgs["iql"].data.reward_scaling == "scale" and cfgs["rgm"].data.reward_scaling == "zscore"
    assert [get_algorithm(a).reads_reward for a in cfgs] == [True, False, False, False, True, True]


def test_each_algorithm_config_stands_alone():
    """An algorithm's config holds the fields its module reads, not another algorithm's: IQL carries no RGM field."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base=None):
        cfgs = {a: compose(config_name="rgm_mujoco", overrides=[f"algo={a}"]).algo
                for a in ("rgm", "smodice", "dwbc", "bc", "iql", "td3bc")}
        paper = {a: compose(config_name="rgm_mujoco", overrides=[f"algo={a}", "protocol=paper"]).algo
                 for a in ("rgm", "iql")}
    assert (paper["rgm"].correction_lr_schedule, paper["rgm"].correction_zero_init) == ("paper", True)
    assert set(paper["iql"]) == set(cfgs["iql"])  # the paper protocol adds nothing to another algorithm's config
    rgm_only = {"correction", "res_scale", "correction_lr", "correction_lr_schedule", "correction_zero_init",
                "correction_weight_decay", "correction_normalize_weights"}
    assert rgm_only <= set(cfgs["rgm"])
    for name in ("smodice", "dwbc", "bc", "iql", "td3bc"):
        assert not rgm_only & set(cfgs[name]), name
    for name in ("bc", "iql", "td3bc"):
        assert not {"divergence", "discriminator_lr", "gradient_penalty", "alpha"} & set(cfgs[name]), name
    assert {"expectile", "temperature"} <= set(cfgs["iql"]) and "td3_alpha" in cfgs["td3bc"]


def test_paper_protocol_composes_each_part():
    """protocol=paper sets each part of the authors' protocol (each can be overridden alone) and the partial
    reward, which a command-line reward= replaces."""
    from hydra import compose, initialize_config_dir

    from torchrl_rgm.algorithms.rgm import correction_horizon, correction_lr
    from torchrl_rgm.run import validate

    with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base=None):
        ours = compose(config_name="rgm_mujoco", overrides=["budget.updates=8000"])
        paper = compose(config_name="rgm_mujoco", overrides=["protocol=paper", "budget.updates=8000"])
        mixed = compose(config_name="rgm_mujoco", overrides=["protocol=paper", "reward=true_reward",
                                                            "dataset.add_expert_to_union=true"])
    for cfg in (ours, paper, mixed):
        validate(cfg)
    assert (ours.dataset.add_expert_to_union, ours.dataset.expert_union_reward, ours.data.terminal_done,
            ours.algo.correction_zero_init, ours.reward.name) == (True, "given", False, True, "negated")
    assert (paper.dataset.add_expert_to_union, paper.dataset.expert_union_reward, paper.data.terminal_done,
            paper.algo.correction_zero_init, paper.reward.name) == (False, "zero", True, True, "partial")
    # our protocol: Δr anchored at the upper level's minimiser, a sharp calibrated ratio, w-proportional extraction;
    # the authors': Δr centred at 0, gradient penalty 10, the raw logit, the batch weighted
    # (unclipped: rows drawn in proportion to w); the authors': Δr centred at 0, gradient penalty 10, the raw logit,
    # the batch weighted by w clipped at 100
    rgm_fields = ("correction_anchor", "gradient_penalty", "density_ratio_temperature", "extraction_sampling",
                  "weight_clip")
    assert tuple(ours.algo[f] for f in rgm_fields) == (True, 0.0, "auto", "weighted", None)
    assert tuple(paper.algo[f] for f in rgm_fields) == (False, 10.0, 1.0, "uniform", 100.0)
    assert mixed.reward.name == "true" and mixed.dataset.add_expert_to_union and mixed.data.terminal_done
    assert (correction_lr(ours), correction_horizon(ours)) == (pytest.approx(3.75e-5), 8000)
    assert (correction_lr(paper), correction_horizon(paper)) == (3e-7, 1_000_000)


def test_paper_correction_schedule_and_zero_start():
    """Δr's cosine runs over the paper's 1e6 updates whatever the budget, the others' over the budget; a
    zero-initialised Δr is 0 on every input."""
    from tensordict import TensorDict

    from torchrl_rgm.modules import make_actor, make_reward_correction_network, make_value_network
    from torchrl_rgm.objectives import RGMLoss
    from torchrl_rgm.objectives.rgm import reward_correction
    from torchrl_rgm.train import RGMUpdate

    value, actor = make_value_network(4, (8,)), make_actor(4, 2, hidden=(8,))
    correction = make_reward_correction_network(4, 2, (8,), zero_init=True)
    td = TensorDict({"observation": torch.randn(5, 4), "action": torch.rand(5, 2),
                     ("next", "reward"): torch.randn(5, 1)}, [5])
    assert torch.equal(reward_correction(correction, "reward_correction_logit", td, 3.0), torch.zeros(5, 1))
    update = RGMUpdate(RGMLoss(value, actor, correction), total_steps=100,
                       correction_lr=3e-7, correction_total_steps=1_000_000)
    for _ in range(50):
        update.scheduler.step()
    lrs = {g["name"]: g["lr"] for g in update.optimizer.param_groups}
    assert lrs["actor"] == pytest.approx(3e-4 * 0.5)  # half-way through its 100-update cosine
    assert lrs["reward_correction"] == pytest.approx(3e-7 * 0.5 * (1 + math.cos(math.pi * 50 / 1e6)))


def test_paper_protocol_run_reports_its_diagnostics(env):
    """End to end on tiny data: D = D^O (no expert in the union), and summary.json holds the per-run diagnostics
    (share of the weight on D^O's top-decile episodes, Spearman(Δr, true r) on D^O)."""
    environ, base = env
    run_dir = base / "paper"
    out = run(environ, f"run_dir={run_dir}", "protocol=paper", "budget.updates=40", "eval.every=40",
              "checkpoint_every=40")
    assert "(0 expert)" in out.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0 < summary["top_decile_data_share"] < 1 and 0 <= summary["top_decile_weight_share"] <= 1
    assert -1 <= summary["spearman_correction_vs_true"] <= 1


def test_a_run_flushes_subnormal_floats(tmp_path):
    """start_run turns on flush-to-zero: arithmetic on subnormal floats (Adam's decayed second moments of a
    barely-trained Δr) cost a long hopper run 94 -> 15 updates/s on CPU; flushed, a subnormal result is 0."""
    from hydra import compose, initialize_config_dir

    from torchrl_rgm.run import start_run

    tiny = torch.tensor([1e-30], dtype=torch.float32)
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero")
    assert (tiny * 1e-10).item() != 0.0  # a subnormal result, kept
    try:
        with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base=None):
            cfg = compose(config_name="rgm_mujoco", overrides=[f"run_dir={tmp_path / 'run'}"])
        start_run(cfg)
        assert (tiny * 1e-10).item() == 0.0
    finally:
        torch.set_flush_denormal(False)


def test_partial25_reward_flips_a_quarter_of_the_signs():
    """reward=partial25 is the paper's partial reward at p = 0.25: a quarter of the rewards flipped (not the half
    that p = 0.5 flips), so the given reward's mean is half the true one's."""
    import torch
    from hydra import compose, initialize_config_dir
    from tensordict import TensorDict

    from torchrl_rgm.data.rewards import make_reward_transform

    with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base=None):
        cfg = compose(config_name="rgm_mujoco", overrides=["reward=partial25"])
    assert cfg.reward.name == "partial"
    n = 20_000
    td = TensorDict({"transition_id": torch.arange(n), ("next", "reward"): torch.ones(n, 1)}, [n])
    out = make_reward_transform(cfg.reward.name, **cfg.reward.kwargs)(td)
    flipped = (out["next", "reward"] < 0).float().mean().item()
    assert abs(flipped - 0.25) < 0.02, flipped
