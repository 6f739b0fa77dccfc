"""benchmarks/datasharing.py: statistics, targets, table and CSV from rows, and its argument checks."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
spec = importlib.util.spec_from_file_location("datasharing_benchmark", ROOT / "benchmarks" / "datasharing.py")
bench = importlib.util.module_from_spec(spec)
sys.modules["datasharing_benchmark"] = bench
spec.loader.exec_module(bench)


def _rows(target, algo, finals, status="ok"):
    return [{"env": target.split("-")[0], "dataset": "medium-replay", "reward": bench.REWARD_OF[algo], "algo": algo,
             "seed": str(i), "final_score": f"{f:.3f}", "best_score": f"{f:.3f}", "wall_s": "1.0", "status": status,
             "error": "", "target_task": target} for i, f in enumerate(finals)]


def test_summary_targets_and_table(tmp_path):
    a, b = "halfcheetah-jump", "halfcheetah-run-backward"
    rows = (_rows(a, "rgm", [50, 60, 70]) + _rows(b, "rgm", [10, 20, 30])
            + _rows(a, "iql_shared", [30, 30, 30]) + _rows(b, "iql_shared", [0, 0, 0])  # RGM +25: met
            + _rows(a, "bc", [70, 70, 70]) + _rows(b, "bc", [20, 20, 20])                # RGM -5: missed
            + _rows(a, "iql_relabeled", [80, 80, 80]) + _rows(b, "iql_relabeled", [40, 40, 40])
            + _rows(a, "smodice", [60]))  # only one target: compared on that target alone
    rows.append({**_rows(b, "smodice", [0])[0], "status": "failed", "error": "boom"})
    s = bench.summarise(rows)
    assert s["targets"] == [b, a]  # the TASKS order
    assert np.isclose(s["overall"]["rgm"]["mean"], 40.0) and s["overall"]["rgm"]["runs"] == 6
    assert s["overall"]["smodice"]["failed"] == 1 and s["overall"]["smodice"]["targets"] == 1
    checks = {c["vs"]: c for c in s["checks"]}
    assert checks["iql_shared"]["met"] and np.isclose(checks["iql_shared"]["gap"], 25.0)
    assert not checks["bc"]["met"] and np.isclose(checks["bc"]["gap"], -5.0)
    assert checks["smodice"]["targets"] == [a] and np.isclose(checks["smodice"]["gap"], 0.0) and checks["smodice"]["met"]
    assert np.isclose(checks["iql_relabeled"]["gap"], -20.0) and "met" not in checks["iql_relabeled"]
    lo, hi = s["overall"]["rgm"]["ci95"]
    assert lo < 40.0 < hi
    text = bench.markdown(s, {"source_level": "medium-replay", "updates": 10, "eval_episodes": 2})
    assert "RGM − iql_shared: +25.0 points (needs ≥ +15) → met" in text
    assert "RGM − bc: -5.0 points (needs ≥ +0) → missed" in text
    assert "gap to the relabelled oracle: RGM − iql_relabeled = -20.0 points" in text
    assert "| halfcheetah-jump | 60.0" in text and "(1 failed)" in text
    bench.plot(s, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0
    path = tmp_path / "r.csv"
    bench.write_rows(path, list(reversed(rows)), bench.COLUMNS, bench._order)
    back = bench.read_rows(path, bench.COLUMNS)
    assert list(back[0]) == bench.COLUMNS and bench.COLUMNS[-1] == "target_task"
    assert [(r["target_task"], r["algo"], r["seed"]) for r in back][:2] == [(a, "rgm", "0"), (a, "rgm", "1")]


def test_bad_arguments_are_refused_before_any_run(tmp_path):
    with pytest.raises(bench.BenchmarkError, match="Unknown target task \\['halfcheetah-fly'\\]"):
        bench.main(["--targets", "halfcheetah-fly", "--csv", str(tmp_path / "x.csv")])
    with pytest.raises(bench.BenchmarkError, match="Unknown algorithm \\['iql'\\]"):
        bench.main(["--algos", "iql", "--csv", str(tmp_path / "x.csv")])
    assert not (tmp_path / "x.csv").exists()


def test_one_real_run_lands_in_the_csv_and_resumes(tmp_path):
    """The whole path on tiny datasets: prebuild check, recipe subprocess, CSV row, table, JSON, plot, resume."""
    import csv
    import os
    import subprocess

    environ = dict(os.environ, MINARI_DATASETS_PATH=str(tmp_path / "minari"), TORCHRL_RGM_CACHE=str(tmp_path / "cache"))
    code = "from tests.data.conftest import build_tiny\n" + "".join(
        f"build_tiny('rgm/{task}/{level}-v0', steps={steps}, seed={i}, env='{task}', max_steps=50)\n"
        for i, (task, level, steps) in enumerate([("halfcheetah-run-forward", "medium", 200),
                                                  ("halfcheetah-jump", "medium", 200),
                                                  ("halfcheetah-run-backward", "medium", 200),
                                                  ("halfcheetah-run-backward", "expert", 100)]))
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ, check=True, capture_output=True)
    out_csv = tmp_path / "ds.csv"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "datasharing.py"), "--targets", "halfcheetah-run-backward",
           "--algos", "bc", "--seeds", "1", "--updates", "20", "--eval-every", "20", "--eval-episodes", "1",
           "--discriminator-steps", "10", "--jobs", "1", "--csv", str(out_csv), "--runs-dir", str(tmp_path / "runs"),
           "--override", "algo.batch_size=64", "--override", "algo.hidden=[32,32]", "--override", "compile=false"]
    first = subprocess.run(cmd, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    with out_csv.open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["status"] == "ok", row["error"]
    assert (row["env"], row["dataset"], row["reward"], row["algo"], row["target_task"]) == (
        "halfcheetah", "medium", "any", "bc", "halfcheetah-run-backward")
    assert np.isfinite(float(row["final_score"]))
    for suffix in (".md", ".json", ".png", ".spec.json"):
        assert out_csv.with_suffix(suffix).stat().st_size > 0
    before = out_csv.read_text()
    again = subprocess.run(cmd, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 runs to do" in again.stdout and out_csv.read_text() == before
