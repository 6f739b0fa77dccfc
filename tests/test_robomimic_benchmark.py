"""benchmarks/robomimic.py: statistics, table and targets from rows (the runs themselves are the recipe's tests)."""
import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
spec = importlib.util.spec_from_file_location("robomimic_benchmark", ROOT / "benchmarks" / "robomimic.py")
bench = importlib.util.module_from_spec(spec)
sys.modules["robomimic_benchmark"] = bench
spec.loader.exec_module(bench)


def _rows(algo, finals, status="ok"):
    return [{"task": "lift", "algo": algo, "seed": str(i), "final_success": f"{f:.3f}", "best_success": f"{f:.3f}",
             "wall_s": "1.0", "status": status, "error": ""} for i, f in enumerate(finals)]


def test_robomimic_benchmark_summary_table_and_targets(tmp_path):
    rows = _rows("rgm", [0.4, 0.5, 0.6]) + _rows("bc", [0.2, 0.3, 0.1]) + _rows("iql", [0.7, 0.6, 0.8])
    rows.append({**_rows("iql", [0.0])[0], "seed": "3", "status": "failed", "error": "boom"})
    s = bench.summarise(rows)
    assert np.isclose(s["rgm"]["final_success"]["mean"], 50.0) and s["rgm"]["runs"] == 3
    assert s["iql"]["runs"] == 3 and s["iql"]["failed"] == 1  # a failed run is counted, not averaged
    lo, hi = s["bc"]["final_success"]["ci95"]
    assert 10.0 <= lo <= 20.0 <= hi <= 30.0
    text = bench.markdown(s, {"task": "lift", "n_expert": 10, "updates": 100, "eval_episodes": 50, "overrides": []})
    assert "RGM − BC: +30.0 points → met" in text and "RGM − IQL: -20.0 points → missed" in text
    assert "| iql | 3 (1 failed) |" in text
    path = tmp_path / "r.csv"
    bench.write_rows(path, list(reversed(rows)), bench.COLUMNS, bench._order)
    back = bench.read_rows(path, bench.COLUMNS)
    assert [(r["algo"], r["seed"]) for r in back][:4] == [("rgm", "0"), ("rgm", "1"), ("rgm", "2"), ("bc", "0")]
