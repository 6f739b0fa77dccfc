"""benchmarks/imperfect_rewards.py: the grid's cells, its statistics, and a real two-cell grid on Ray."""
import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "imperfect_rewards.py"
spec = importlib.util.spec_from_file_location("imperfect_rewards", SCRIPT)
grid = importlib.util.module_from_spec(spec)
sys.modules["imperfect_rewards"] = grid  # dataclasses look their module up there
spec.loader.exec_module(grid)


def test_prebuild_builds_missing_datasets_in_the_grids_namespace(monkeypatch, tmp_path):
    """Before the parallel runs: missing datasets of a local namespace (rgm, rgm-<name>) are built once
    under the ids the recipe will load; a hub namespace or build_if_missing=false builds nothing."""
    from torchrl_rgm.generation import build as build_mod

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    calls = []
    monkeypatch.setattr(build_mod, "build_env", lambda env, **kw: calls.append((env, kw)))
    cells = grid.make_cells(["hopper"], ["medium-replay"], ["negated"], ["rgm"], seeds=1)
    for overrides, expected in (([], "rgm"), (["dataset.namespace=rgm-small"], "rgm-small"),
                                (["dataset.namespace=mujoco"], None),
                                (["dataset.build_if_missing=false"], None)):
        calls.clear()
        grid.prebuild(cells, {"overrides": overrides})
        assert calls == ([] if expected is None else
                         [("hopper", {"levels": ["expert", "medium-replay"], "scale": 1.0, "namespace": expected,
                                      "jobs": min(2, len(os.sched_getaffinity(0)))})])


def test_reward_agnostic_algorithms_run_once_per_env_and_dataset():
    cells = grid.make_cells(["hopper", "walker2d"], ["medium-replay"], ["true", "negated"], list(grid.ALGOS), seeds=2)
    per = {a: [c for c in cells if c.algo == a] for a in grid.ALGOS}
    for algo in ("bc", "smodice", "dwbc"):
        assert len(per[algo]) == 2 * 2 and {c.reward for c in per[algo]} == {"any"}
    for algo in ("rgm", "iql", "td3bc"):
        assert len(per[algo]) == 2 * 2 * 2 and {c.reward for c in per[algo]} == {"true", "negated"}
    assert len({c.key for c in cells}) == len(cells)
    skipped = grid.make_cells(["hopper"], ["medium"], ["zero", "true"], ["iql", "rgm"], 1, skip=[["iql", "zero"]])
    assert {(c.algo, c.reward) for c in skipped} == {("iql", "true"), ("rgm", "zero"), ("rgm", "true")}


@pytest.mark.parametrize("kind,kwargs", [
    ("algo", dict(algos=["rgm", "cql"])), ("reward", dict(rewards=["negative"])),
    ("env", dict(envs=["ant"])), ("dataset", dict(datasets=["medium_replay"])),
])
def test_unknown_names_fail_before_any_run_listing_the_valid_ones(kind, kwargs):
    args = dict(envs=["hopper"], datasets=["medium-replay"], rewards=["negated"], algos=["rgm"], seeds=1) | kwargs
    with pytest.raises(grid.GridError, match=f"Unknown {kind}") as err:
        grid.make_cells(**args)
    valid = {"algo": grid.ALGOS, "reward": grid.REWARDS, "env": grid.ENVS, "dataset": grid.DATASETS}[kind]
    assert all(v in str(err.value) for v in valid)


def test_the_command_line_refuses_an_unknown_name_before_any_run(tmp_path):
    """The command line refuses an unknown name as make_cells does, before Ray starts or any file is written (one
    interpreter start: the refusal is the same code path for every kind above)."""
    out = subprocess.run([sys.executable, str(SCRIPT), "--algos", "rgm", "cql", "--csv", str(tmp_path / "g.csv")],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "Unknown algo ['cql']; valid algos are" in out.stderr
    assert not list(tmp_path.iterdir())


def test_iqm_and_bootstrap_against_scipy():
    from scipy import stats

    x = np.array([0.0, 1, 2, 3, 4, 5, 6, 100])
    assert grid.iqm(x) == pytest.approx(np.mean([2, 3, 4, 5]))
    rng = np.random.default_rng(0)
    y = rng.normal(10, 3, 40)
    lo, hi = grid.bootstrap_ci([y], np.mean, n=4000)
    ref = stats.bootstrap((y,), np.mean, n_resamples=4000, method="percentile", random_state=1).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.15) and hi == pytest.approx(ref.high, abs=0.15)
    # Stratified: resampling within groups never mixes them, so two constant groups give a point.
    assert grid.bootstrap_ci([np.full(3, 1.0), np.full(3, 5.0)], grid.iqm) == (3.0, 3.0)


def test_bootstrap_evaluates_all_resamples_at_once_with_the_same_draws_as_one_at_a_time():
    def one_at_a_time(groups, statistic, n=5000, seed=0, level=0.95):  # the definition, resample by resample
        rng = np.random.default_rng(seed)
        stats = [statistic(np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])) for _ in range(n)]
        return tuple(float(q) for q in np.quantile(stats, [(1 - level) / 2, (1 + level) / 2]))

    rng = np.random.default_rng(3)
    groups = [rng.normal(10, 5, 3), rng.normal(30, 2, 2), rng.normal(0, 9, 4)]
    for statistic in (grid.iqm, np.mean, lambda v: float(np.median(v))):  # the last has no axis: row by row
        assert grid.bootstrap_ci(groups, statistic) == one_at_a_time(groups, statistic)
    assert grid.bootstrap_ci(groups[:1], np.mean, n=300, seed=7) == one_at_a_time(groups[:1], np.mean, n=300, seed=7)


def test_table_repeats_reward_agnostic_runs_and_checks_the_targets():
    rows = []
    for seed in range(3):
        for reward, algo, score in [("negated", "rgm", 30), ("negated", "iql", 5), ("negated", "td3bc", 25),
                                    ("any", "bc", 10), ("any", "smodice", 31), ("true", "rgm", 40)]:
            rows.append(dict(env="hopper", dataset="medium-replay", reward=reward, algo=algo, seed=str(seed),
                             final_score=str(score + seed), best_score="", wall_s="1", status="ok", error=""))
    rows.append(dict(env="hopper", dataset="medium-replay", reward="negated", algo="iql", seed="3", final_score="",
                     best_score="", wall_s="1", status="failed", error="RuntimeError: boom"))
    text = grid.markdown(rows, dict(updates=10, eval_episodes=2))
    assert ("| hopper | medium-replay | true | 41.0 [40.0, 42.0] | 32.0 [31.0, 33.0] † | 11.0 [10.0, 12.0] † | – | – |"
            in text)
    assert "| negated | rgm − iql | +25.0 | ≥ +10 | met |" in text
    assert "| negated | rgm − td3bc | +5.0 | ≥ +10 | missed |" in text
    assert "| negated | rgm − smodice | -1.0 | ≥ +0 | missed |" in text
    assert "RuntimeError: boom" in text and "18 runs ok, 1 failed" in text


def test_a_grid_still_running_gives_each_cell_its_number_of_seeds():
    def row(algo, reward, seed, score):
        return dict(env="hopper", dataset="medium-replay", reward=reward, algo=algo, seed=str(seed),
                    final_score=str(score), best_score="", wall_s="1", status="ok", error="")

    whole = [row("rgm", "true", s, 10 + s) for s in range(2)] + [row("smodice", "any", s, 5 + s) for s in range(2)]
    assert "(2)" not in grid.markdown(whole, dict(updates=10, eval_episodes=2))
    text = grid.markdown(whole + [row("rgm", "true", 2, 12)], dict(updates=10, eval_episodes=2))
    assert "| hopper | medium-replay | true | 11.0 [10.0, 12.0] (3) | 5.5 [5.0, 6.0] (2) † |" in text
    assert "The grid is not complete" in text.splitlines()[2] and "| env | dataset | reward | rgm | smodice |\n" in text


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny real hopper datasets (built by the recipe tests' builder) in a private Minari directory."""
    base = tmp_path_factory.mktemp("grid")
    environ = dict(os.environ, MINARI_DATASETS_PATH=str(base / "minari"), TORCHRL_RGM_CACHE=str(base / "c"))
    code = ("from tests.data.conftest import build_tiny\n"
            "build_tiny('rgm/hopper/medium-replay-v0', steps=1500, policy='actor', max_steps=80)\n"
            "build_tiny('rgm/hopper/expert-v0', steps=300, seed=3, policy='actor', max_steps=150)\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ, check=True, capture_output=True)
    return environ


TINY = ["algo.batch_size=64", "algo.hidden=[32,32]", "compile=false", "eval.num_envs=2"]


def test_an_interrupted_run_continues_from_its_checkpoint(tiny, tmp_path, monkeypatch):
    import json
    import signal
    import time

    for key in ("MINARI_DATASETS_PATH", "TORCHRL_RGM_CACHE"):
        monkeypatch.setenv(key, tiny[key])
    spec = dict(updates=600, eval_every=150, eval_episodes=2, discriminator_steps=10, overrides=TINY)
    cell = grid.Cell("hopper", "medium-replay", "negated", "rgm", 0)
    run_dir = tmp_path / cell.name
    args = [*grid.recipe_overrides(cell, spec), f"run_dir={run_dir}"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "recipes" / "rgm_mujoco.py"), *args], cwd=ROOT, env=tiny,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (run_dir / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "summary.json").exists()
    row = grid.run_cell(cell, spec, str(tmp_path), threads=1, root=str(ROOT))
    assert row["status"] == "ok", row["error"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["updates"] == 600 and float(row["final_score"]) == pytest.approx(summary["final_normalized_score"],
                                                                                 abs=1e-3)
    import torch

    steps = [h["step"] for h in torch.load(run_dir / "checkpoint.pt", weights_only=True)["history"]]
    assert steps == [150, 300, 450, 600]
    from omegaconf import OmegaConf

    assert OmegaConf.load(run_dir / "config.yaml").resume == str(run_dir)  # continued, not restarted
    # A run already finished is read, not run again.
    again = grid.run_cell(cell, spec, str(tmp_path), threads=1, root=str(ROOT))
    assert again["final_score"] == row["final_score"] and again["status"] == "ok"


def test_runs_per_process_packs_seeds_of_one_vectorizable_configuration():
    cells = sorted(grid.make_cells(["hopper", "walker2d"], ["medium-replay"], ["partial"], ["rgm", "bc"], seeds=5),
                   key=grid.run_order)
    groups = grid.pack_cells(cells, 2)
    assert sorted(c.key for g in groups for c in g) == sorted(c.key for c in cells)  # every run once
    for g in groups:
        assert len({(c.env, c.dataset, c.reward, c.algo) for c in g}) == 1 and len({c.seed for c in g}) == len(g)
        assert len(g) <= 2 and (len(g) == 1 or g[0].algo in grid.VECTORIZABLE)
    assert [len(g) for g in groups if g[0].algo == "rgm" and g[0].env == "hopper"] == [2, 2, 1]
    assert all(len(g) == 1 for g in groups if g[0].algo == "bc")
    assert grid.pack_cells(cells, 1) == [[c] for c in cells]


def test_a_packed_group_gives_one_row_per_seed_and_is_read_back(tiny, tmp_path, monkeypatch):
    for key in ("MINARI_DATASETS_PATH", "TORCHRL_RGM_CACHE"):
        monkeypatch.setenv(key, tiny[key])
    spec = dict(updates=60, eval_every=30, eval_episodes=2, discriminator_steps=10, overrides=TINY)
    cells = [grid.Cell("hopper", "medium-replay", "partial", "rgm", s) for s in (0, 1)]
    rows = grid.run_cells(cells, spec, str(tmp_path), threads=1, root=str(ROOT))
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["error"] for r in rows]
    assert [r["seed"] for r in rows] == [0, 1] and rows[0]["final_score"] != rows[1]["final_score"]
    for c in cells:
        assert (tmp_path / c.name / "summary.json").exists()
    again = grid.run_cells(cells, spec, str(tmp_path), threads=1, root=str(ROOT))
    assert [r["final_score"] for r in again] == [r["final_score"] for r in rows]


def test_two_cell_grid_on_local_ray_records_a_crash_and_resumes(tiny, tmp_path):
    environ = tiny
    out_csv = tmp_path / "grid.csv"
    # walker2d's datasets are missing and may not be built: that run crashes, hopper's succeeds.
    cmd = [sys.executable, str(SCRIPT), "--envs", "hopper", "walker2d", "--datasets", "medium-replay", "--algos", "bc",
           "--seeds", "1", "--updates", "30", "--eval-every", "30", "--eval-episodes", "2",
           "--discriminator-steps", "10", "--num-cpus", "2", "--csv", str(out_csv), "--out-dir", str(tmp_path / "runs"),
           "--override", "algo.batch_size=64", "--override", "algo.hidden=[32,32]", "--override", "compile=false",
           "--override", "eval.num_envs=2", "--override", "dataset.build_if_missing=false"]
    first = subprocess.run(cmd, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    with out_csv.open() as f:
        rows = {r["env"]: r for r in csv.DictReader(f)}
    ok, failed = rows["hopper"], rows["walker2d"]
    assert list(ok) == grid.COLUMNS
    assert ok["status"] == "ok" and ok["reward"] == "any" and float(ok["wall_s"]) > 0
    assert np.isfinite(float(ok["final_score"])) and np.isfinite(float(ok["best_score"]))
    assert failed["status"] == "failed" and "walker2d" in failed["error"], failed["error"]
    for suffix in (".md", ".png", ".spec.json"):
        assert out_csv.with_suffix(suffix).stat().st_size > 0
    # Resume: rows present are skipped, so nothing runs (no Ray start) and the CSV is unchanged.
    before = out_csv.read_text()
    again = subprocess.run(cmd, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 to run" in again.stdout and out_csv.read_text() == before
    # Other settings on the same CSV are refused instead of mixing budgets.
    other = subprocess.run([*cmd[:cmd.index("--updates") + 1], "31", *cmd[cmd.index("--updates") + 2:]],
                           cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=600)
    assert other.returncode != 0 and "pass the same settings to resume" in other.stderr
    assert out_csv.read_text() == before


def test_paper_protocol_preset_is_the_deciding_grid():
    """--paper-protocol: 3 envs x medium-replay x {true, partial, zero, negated} x 6 algorithms x 3 seeds under
    protocol=paper, at 3x the quick grid's budget; IQL and TD3+BC skip the zero reward (they are BC there)."""
    s = grid.GRIDS["paper_protocol"]
    cells = grid.make_cells(s["envs"], s["datasets"], s["rewards"], s["algos"], s["seeds"], s["skip"])
    assert set(s["envs"]) == {"hopper", "halfcheetah", "walker2d"} and s["overrides"] == ["protocol=paper"]
    assert s["updates"] >= 3 * grid.GRIDS["quick"]["updates"]
    # per env and seed: rgm x 4 rewards, iql and td3bc x 3, smodice, dwbc and bc once
    assert len(cells) == 3 * 3 * (4 + 3 + 3 + 3)
    overrides = grid.recipe_overrides(cells[0], s)
    assert "protocol=paper" in overrides and any(o.startswith("reward=") for o in overrides)


def test_decision_targets_from_rows():
    rows = []
    means = {("true", "rgm"): 30, ("zero", "rgm"): 20, ("partial", "rgm"): 28, ("negated", "rgm"): 25,
             ("any", "smodice"): 21, ("any", "dwbc"): 29, ("partial", "iql"): 15, ("partial", "td3bc"): 19,
             ("negated", "iql"): 1, ("negated", "td3bc"): 2}
    for (reward, algo), m in means.items():
        for seed, d in enumerate((-1, 0, 1)):
            rows.append(dict(env="hopper", dataset="medium-replay", reward=reward, algo=algo, seed=str(seed),
                             final_score=str(m + d), best_score="", wall_s="1", status="ok", error=""))
    lines = grid.decision_lines(grid.summarise(rows))
    assert lines == [
        "| rgm(true) − rgm(zero): the reward is used | +10.0 | ≥ +5 | met |",
        "| rgm(partial) − smodice | +7.0 | ≥ +5 | met |",
        "| rgm(partial) − dwbc | -1.0 | ≥ +0 | missed |",
        "| rgm(partial) − max(iql, td3bc)(partial) | +9.0 | ≥ +10 | missed |",
        "| rgm(negated) − max(iql, td3bc)(negated) | +23.0 | ≥ +10 | met |",
    ]


def test_protocol_ablation_table_from_rows(tmp_path):
    path = ROOT / "benchmarks" / "protocol_ablation.py"
    spec_ = importlib.util.spec_from_file_location("protocol_ablation", path)
    abl = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(abl)
    rows = [dict(env=e, dataset="medium-replay", reward="partial", variant=v, seed=str(s), final_score=str(base + s),
                 best_score="", top_decile_weight_share="0.5", spearman_correction_vs_true="0.25", wall_s="1",
                 status="ok", error="")
            for e, off in (("hopper", 0), ("halfcheetah", 10)) for v, b in (("ours", 10), ("paper", 20))
            for s in range(3) for base in [b + off]]
    text = abl.markdown(rows, dict(envs=["hopper", "halfcheetah"], datasets=["medium-replay"], reward="partial",
                                   seeds=3, updates=8000))
    assert "| ours | 11.0 [10.0, 12.0] | 21.0 [20.0, 22.0] | 16.0 | 0.50 | 0.25 |" in text
    assert "| paper | 21.0 [20.0, 22.0] | 31.0 [30.0, 32.0] | 26.0 | 0.50 | 0.25 |" in text
    # every variant's overrides compose: each part alone, and the whole protocol
    from hydra import compose, initialize_config_dir

    from torchrl_rgm.run import validate

    with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base=None):
        for v in abl.VARIANTS:
            cfg = compose(config_name="rgm_mujoco", overrides=abl.overrides("hopper", "medium-replay", "partial", v, 0,
                                                                             dict(updates=10, eval_every=5,
                                                                                  eval_episodes=1,
                                                                                  discriminator_steps=1)))
            validate(cfg)
            assert cfg.reward.name == "partial"


def test_run_order_is_seed_major_with_the_deciding_runs_first():
    spec = grid.GRIDS["paper_protocol"]
    cells = sorted(grid.make_cells(spec["envs"], spec["datasets"], spec["rewards"], spec["algos"], spec["seeds"],
                                   spec["skip"]), key=grid.run_order)
    assert [c.seed for c in cells] == sorted(c.seed for c in cells)
    first = cells[:3]
    assert {c.algo for c in first} == {"rgm"} and {c.reward for c in first} == {"partial"}
    assert {c.env for c in first} == set(spec["envs"])
    seed0 = [c for c in cells if c.seed == 0]
    algos = [c.algo for c in seed0]
    assert algos.index("smodice") < algos.index("dwbc") < algos.index("td3bc") < algos.index("bc")
    assert len(seed0) == len(set(seed0)) == len(cells) // spec["seeds"]


def test_decision_gaps_of_an_interrupted_grid_compare_the_same_tasks():
    def row(env, reward, algo, score):
        return dict(env=env, dataset="medium-replay", reward=reward, algo=algo, seed="0", final_score=str(score),
                    best_score="", wall_s="1", status="ok", error="")

    rows = [row("hopper", "partial", "rgm", 30), row("walker2d", "partial", "rgm", 10), row("hopper", "any", "dwbc", 20),
            row("hopper", "partial", "iql", 5), row("hopper", "partial", "td3bc", 12)]
    lines = grid.decision_lines(grid.summarise(rows), rows)
    assert "| rgm(partial) − dwbc (1 task) | +10.0 | ≥ +0 | met |" in lines  # not 20 − 20 over unequal task sets
    assert "| rgm(partial) − max(iql, td3bc)(partial) (1 task) | +18.0 | ≥ +10 | met |" in lines
    # and within a task the seeds both have: rgm's seeds 1-2 are left out until smodice has them
    rows += [row("hopper", "any", "smodice", 28)] + [dict(row("hopper", "partial", "rgm", 0), seed=s) for s in "12"]
    lines = grid.decision_lines(grid.summarise(rows), rows)
    assert "| rgm(partial) − smodice (1 task) | +2.0 | ≥ +5 | missed |" in lines


def test_decision_table_gives_each_baseline_and_the_better_one_per_task_and_seed():
    def row(env, algo, seed, score):
        return dict(env=env, dataset="medium-replay", reward="partial", algo=algo, seed=str(seed),
                    final_score=str(score), best_score="", wall_s="1", status="ok", error="")

    # IQL and TD3+BC each win one seed: as algorithms both average 10, per seed the better one scores 15
    rows = [row("hopper", "rgm", s, 20) for s in (0, 1)] + [row("hopper", "iql", 0, 15), row("hopper", "iql", 1, 5),
                                                             row("hopper", "td3bc", 0, 5), row("hopper", "td3bc", 1, 15)]
    rows.append(row("walker2d", "rgm", 0, 30))  # no baseline run there yet: left out of every gap
    lines = grid.decision_lines(grid.summarise(rows), rows)
    assert "| rgm(partial) − max(iql, td3bc)(partial) (1 task) | +10.0 | ≥ +10 | met |" in lines
    assert "| … rgm(partial) − iql (1 task) | +10.0 | | |" in lines
    assert "| … rgm(partial) − td3bc (1 task) | +10.0 | | |" in lines
    assert ("| … rgm(partial) − the better of iql, td3bc per task and seed (1 task, 2 task-seed pairs) | +5.0 | ≥ +10 "
            "| missed |") in lines
    # a seed only one baseline has is not a pair: the better of the two is unknown there
    rows.append(row("hopper", "rgm", 2, 0))
    rows.append(row("hopper", "iql", 2, -50))
    lines = grid.decision_lines(grid.summarise(rows), rows)
    assert any("per task and seed (1 task, 2 task-seed pairs) | +5.0 |" in line for line in lines)


def test_report_only_describes_the_rows_with_the_settings_they_were_run_with(tmp_path):
    csv_path = tmp_path / "study.csv"
    grid.write_rows(csv_path, [dict(env="hopper", dataset="medium-replay", reward="partial", algo="rgm", seed="0",
                                    final_score="12.5", best_score="", wall_s="1", status="ok", error="")])
    recorded = dict(updates=24000, eval_every=4000, eval_episodes=10, discriminator_steps=1000,
                    overrides=["protocol=paper", "reward.kwargs.p=0.25"])
    csv_path.with_suffix(".spec.json").write_text(grid.json.dumps(recorded))
    before = csv_path.with_suffix(".spec.json").read_text()
    # the quick preset's budget and no --override: the header must still say what produced the rows
    grid.main(["--report-only", "--csv", str(csv_path), "--out-dir", str(tmp_path / "none")])
    text = csv_path.with_suffix(".md").read_text()
    assert "24000 updates" in text and "`protocol=paper reward.kwargs.p=0.25`" in text
    assert csv_path.with_suffix(".spec.json").read_text() == before and csv_path.with_suffix(".png").exists()


def test_expert_baseline_targets_from_rows():
    """Issue 28's targets by hand: per task against BC on the expert (seeds both sides have), over tasks against the
    better of SEABO and OTR, per task on the negated reward against the better of IQL and TD3+BC."""
    scores = {("hopper", "true", "rgm"): [50, 60], ("hopper", "negated", "rgm"): [90, 96, 99],
              ("walker2d", "partial25", "rgm"): [70, 74], ("hopper", "any", "bc_expert"): [99, 99],
              ("walker2d", "any", "bc_expert"): [70, 80], ("hopper", "any", "seabo_iql"): [30, 40],
              ("hopper", "any", "otr_iql"): [52, 52], ("walker2d", "any", "otr_iql"): [60, 64],
              ("hopper", "negated", "iql"): [1, 3], ("hopper", "negated", "td3bc"): [80, 86],
              ("walker2d", "any", "bc_expert_det"): [90, 90]}
    rows = [dict(env=env, dataset="medium-replay", reward=reward, algo=algo, seed=str(seed), final_score=str(x),
                 best_score="", wall_s="1", status="ok", error="")
            for (env, reward, algo), xs in scores.items() for seed, x in enumerate(xs)]
    assert grid.expert_target_lines(rows) == [
        "| hopper true: rgm − bc_expert | -44.0 | 2 | ≥ -5 | missed |",
        "| walker2d partial25: rgm − bc_expert_det | -18.0 | 2 | ≥ -5 | missed |",  # the stronger BC
        "| hopper negated: rgm − bc_expert | -6.0 | 2 | ≥ -5 | missed |",   # seed 2 has no bc_expert run
        "| mean over 1 task, true: rgm − max(seabo_iql, otr_iql) | +3.0 | – | ≥ +5 | missed |",
        "| mean over 1 task, partial25: rgm − max(seabo_iql, otr_iql) | +10.0 | – | ≥ +5 | met |",
        "| hopper negated: rgm − max(iql, td3bc) | +10.0 | 2 | ≥ +10 | met |",
    ]
    assert "partial25" in grid.GRIDS["expert_baselines"]["rewards"]


def test_which_method_when_picks_each_cells_best_mean_with_enough_seeds():
    """By hand: reward-agnostic runs count in every reward row, a one-seed algorithm is not a cell's best, RGM's gap
    is its mean minus the best's, and a cell RGM did not run has no row."""
    scores = {("hopper", "true", "rgm"): [50, 60], ("hopper", "negated", "rgm"): [90, 100],
              ("hopper", "any", "bc_expert_det"): [99, 99], ("hopper", "negated", "iql"): [120],
              ("hopper", "zero", "iql"): [1, 2], ("walker2d", "true", "iql"): [5, 7]}
    rows = [dict(env=env, dataset="medium-replay", reward=reward, algo=algo, seed=str(seed), final_score=str(x),
                 best_score="", wall_s="1", status="ok", error="")
            for (env, reward, algo), xs in scores.items() for seed, x in enumerate(xs)]
    lines = grid.which_method_lines(rows)
    assert [line.split(" | ")[:3] for line in lines] == [["| hopper", "true", "`bc_expert_det`"],
                                                          ["| hopper", "negated", "`bc_expert_det`"]]
    assert lines[0].endswith("| 99.0 [99.0, 99.0] | 2 | 55.0 (-44.0) |")
    assert lines[1].endswith("| 95.0 (-4.0) |")
    rows += [dict(rows[0], reward="negated", algo="rgm", seed="2", final_score="160")]
    assert grid.which_method_lines(rows)[1].endswith("| best |")
