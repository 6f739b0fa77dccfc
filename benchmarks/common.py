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
    error, wall = _run_process(recipe, args, threads, cwd, timeout)
    if error:
        return None, error, wall
    return json.loads((run_dir / "summary.json").read_text()), "", wall


def _run_process(recipe: Path, args: list[str], threads: int, cwd: Path,
                 timeout: float | None) -> tuple[str, float]:
    """``python <recipe> <args>`` with ``threads`` threads; ``(error, wall_s)``, error "" on success, else the last
    line of its stderr (the exception, with HYDRA_FULL_ERROR) or the timeout."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), RL_WARNINGS="0",
               HYDRA_FULL_ERROR="1")
    start = time.time()
    try:
        proc = subprocess.run([sys.executable, str(recipe), *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s", time.time() - start
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        return (lines[-1] if lines else f"exit status {proc.returncode}")[:300], time.time() - start
    return "", time.time() - start


def run_all(calls, jobs: int, on_row) -> float:
    """Run the zero-argument ``calls`` (each returns a CSV row) ``jobs`` at a time, in order; ``on_row(row)``
    as each result is collected (write the CSV there: a row lands as its run ends). Returns the wall time."""
    from concurrent.futures import ThreadPoolExecutor

    start = time.time()
    with ThreadPoolExecutor(jobs) as pool:
        for fut in [pool.submit(call) for call in calls]:
            on_row(fut.result())
    return time.time() - start


def run_recipe_group(recipe: Path, args: list[str], pattern: str, seeds: list[int], threads: int, cwd: Path,
                     timeout: float | None = None) -> dict[int, tuple[dict | None, str, float | None]]:
    """The runs ``seeds`` of one configuration (``args``, without ``seed=``) trained together in one process
    (the recipe's ``seeds=[...]``, one vectorised update); ``pattern`` names each run's directory with ``{seed}``.
    Returns ``{seed: (summary, error, wall_s)}`` as :func:`run_recipe` does; ``wall_s`` is the group's wall time
    shared equally among the runs it trained.

    Runs with a ``summary.json`` are not rerun; if every other run has a checkpoint the group resumes them
    (``resume=<pattern>``), otherwise their directories are cleared and they start together.
    """
    dirs = {s: Path(pattern.replace("{seed}", str(s))) for s in seeds}
    results = {s: (json.loads((d / "summary.json").read_text()), "", None) for s, d in dirs.items()
               if (d / "summary.json").exists()}
    todo = [s for s in seeds if s not in results]
    if not todo:
        return results
    seeds_arg = f"seeds=[{','.join(map(str, todo))}]"
    if all((dirs[s] / "checkpoint.pt").exists() for s in todo):
        args = [seeds_arg, f"resume='{pattern}'"]
    else:
        for s in todo:
            shutil.rmtree(dirs[s], ignore_errors=True)
        args = [*args, seeds_arg, f"run_dir='{pattern}'"]
    error, wall = _run_process(recipe, args, threads, cwd, timeout)
    for s in todo:
        summary_path = dirs[s] / "summary.json"
        if error or not summary_path.exists():
            results[s] = (None, error or "the group ended without this run's summary", wall / len(todo))
        else:
            results[s] = (json.loads(summary_path.read_text()), "", wall / len(todo))
    return results
