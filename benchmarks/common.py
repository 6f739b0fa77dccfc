"""What the benchmarks share: one recipe run in a subprocess, resumable, a failure reported not raised."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run_recipe(recipe: Path, args: list[str], run_dir: Path, threads: int, cwd: Path,
               timeout: float | None = None) -> tuple[dict | None, str, float | None]:
    """Run ``recipe`` with hydra ``args`` into ``run_dir``; returns ``(summary, error, wall_s)``.

    A run whose ``summary.json`` exists is not rerun (``wall_s`` None: read it from the summary); one
    with a checkpoint resumes from it (``resume=``); a run directory without either (a run that died
    before its first checkpoint) is removed and started again. ``summary`` is None when the run
    failed, ``error`` then holds the last line of its stderr (the exception, with HYDRA_FULL_ERROR).
    """
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").exists():
        return json.loads((run_dir / "summary.json").read_text()), "", None
    if (run_dir / "checkpoint.pt").exists():
        args = [f"resume={run_dir}"]
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        args = [*args, f"run_dir={run_dir}"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), RL_WARNINGS="0",
               HYDRA_FULL_ERROR="1")
    start = time.time()
    try:
        proc = subprocess.run([sys.executable, str(recipe), *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s", time.time() - start
    wall = time.time() - start
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        return None, (lines[-1] if lines else f"exit status {proc.returncode}")[:300], wall
    return json.loads((run_dir / "summary.json").read_text()), "", wall


def run_all(calls, jobs: int, on_row) -> float:
    """Run the zero-argument ``calls`` (each returns a CSV row) ``jobs`` at a time, in order; ``on_row(row)``
    as each result is collected (write the CSV there: a row lands as its run ends). Returns the wall time."""
    from concurrent.futures import ThreadPoolExecutor

    start = time.time()
    with ThreadPoolExecutor(jobs) as pool:
        for fut in [pool.submit(call) for call in calls]:
            on_row(fut.result())
    return time.time() - start
