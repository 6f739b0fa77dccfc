"""The house rules of the package's layout (issue 17), checked on the source: no import loops between its modules,
no module over 400 lines, and function-level imports only for the optional extras (each with its reason)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "torchrl_rgm"
MAX_LINES = 400
#: Imports allowed inside functions: optional extras (and heavy tools only a command needs), each with its reason.
LAZY_OK = {
    "h5py": "robomimic extra: reading/writing robomimic files",
    "robosuite": "robomimic extra: the evaluation env and the scripted data generator",
    "wandb": "wandb extra",
    "ray": "the study's extra",
    # heavy, and needed only where a run labels OTR rewards, draws a figure or reports rank correlations: imported
    # there, so that a recipe's start (and every refusal of a bad input) does not pay ~1 s for them
    "ot": "POT, and the scikit-learn it imports: OTR's labels only",
    "matplotlib": "the figures a finished run draws",
    "scipy": "scipy.stats' Spearman correlation, in a finished run's report",
}
#: What a recipe's start must not import (test_a_recipe_starts_without_its_heavy_optional_imports).
STARTUP_FREE = ("ot", "sklearn", "matplotlib", "scipy.stats")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        anchor = parts if is_package else parts[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" for a in node.names] + [base]


def _top_level_imports(module: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        names = []
        if isinstance(node, ast.ImportFrom):
            names = _resolve(module, path.name == "__init__.py", node)
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n for n in names if n in known and n != module}
    return found


def test_no_module_imports_another_in_a_loop():
    modules = _modules()
    graph = {m: _top_level_imports(m, p, set(modules)) for m, p in modules.items()}
    # a package's own __init__ importing its submodules is how a package is made, not a loop: drop child -> parent
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in graph[m]:
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert not cycles, "import loops: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES, f"{path.name}: split it (≤ {MAX_LINES} lines)"


def test_function_level_imports_are_only_for_optional_extras():
    bad = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import):
                        roots = [a.name.split(".")[0] for a in inner.names]
                    elif isinstance(inner, ast.ImportFrom):
                        roots = [(inner.module or "").split(".")[0] if inner.level == 0 else "."]
                    else:
                        continue
                    bad += [f"{module}.{node.name}: {r}" for r in roots if r not in LAZY_OK]
    assert not bad, "function-level imports of non-optional modules:\n" + "\n".join(sorted(set(bad)))


def test_a_recipe_starts_without_its_heavy_optional_imports():
    """The recipe module and the package's run entry import none of :data:`STARTUP_FREE` (measured ~1 s together
    on a 2-core AMD EPYC): a refused input answers sooner, and every test that runs a recipe starts faster."""
    code = ("import sys; sys.argv = ['rgm_mujoco']; sys.path.insert(0, 'recipes'); import torchrl_rgm.run, rgm_mujoco; "
            f"print([m for m in {STARTUP_FREE!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr[-500:]
