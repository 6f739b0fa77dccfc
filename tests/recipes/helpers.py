"""What the recipe tests share: tiny real datasets in a private Minari directory, and running a recipe for real."""
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tiny_datasets(base: Path, builds: list[str], **env) -> dict:
    """Build ``builds`` (``build_tiny(...)`` calls, tests/data/conftest.py) under ``base``; the environment to run
    recipes in (private Minari directory and conversion cache, plus ``env``)."""
    environ = dict(os.environ, MINARI_DATASETS_PATH=str(base / "minari"), TORCHRL_RGM_CACHE=str(base / "cache"), **env)
    code = "from tests.data.conftest import build_tiny\n" + "".join(f"build_tiny({b})\n" for b in builds)
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ, check=True, capture_output=True)
    return environ


def run_recipe(recipe: Path, tiny: list[str], environ: dict, *overrides, check=True, **kwargs):
    """``python <recipe> <tiny> <overrides>`` in a subprocess, output captured."""
    return subprocess.run([sys.executable, str(recipe), *tiny, *overrides], cwd=ROOT, env=environ,
                          capture_output=True, text=True, check=check, **kwargs)


def side_by_side(function, items) -> list:
    """``[function(item) for item in items]``, one item per core at a time (independent subprocesses)."""
    items = list(items)
    with ThreadPoolExecutor(max_workers=max(1, min(len(items), os.cpu_count() or 1))) as pool:
        return list(pool.map(function, items))


def run_recipes(recipe: Path, tiny: list[str], environ: dict, *runs: list[str]):
    """Independent runs of ``recipe`` (one override list each) side by side, one thread each, one per core; their
    completed processes, in order (each checked)."""
    environ = dict(environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return side_by_side(lambda overrides: run_recipe(recipe, tiny, environ, *overrides), runs)
