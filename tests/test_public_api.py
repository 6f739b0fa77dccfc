"""The public API the docs site documents: every public module declares it completely in ``__all__``.

``tests/docs/test_site.py`` then checks that every name listed here is in the built API reference.
"""
import importlib
import inspect
import pkgutil

import pytest

import torchrl_rgm

MODULES = sorted(m.name for m in pkgutil.walk_packages(torchrl_rgm.__path__, "torchrl_rgm.")
                 if not any(part.startswith("_") for part in m.name.split(".")))


def _skip_optional(name):
    try:
        return importlib.import_module(name)
    except ImportError as e:  # pragma: no cover - every module imports its extras lazily
        pytest.fail(f"{name} does not import without its optional extras: {e}")


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_every_public_definition(name):
    module = _skip_optional(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    defined = [n for n, obj in vars(module).items()
               if not n.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
               and obj.__module__ == name]
    missing = [n for n in defined if n not in module.__all__]
    assert not missing, f"{name}: public definitions not in __all__ (add them, or prefix with _): {missing}"
    absent = [n for n in module.__all__ if not hasattr(module, n)]
    assert not absent, f"{name}.__all__ names what the module does not have: {absent}"


@pytest.mark.parametrize("name", MODULES)
def test_every_public_class_and_function_has_a_docstring(name):
    module = _skip_optional(name)
    undocumented = [n for n in module.__all__
                    if (inspect.isclass(getattr(module, n)) or inspect.isfunction(getattr(module, n)))
                    and not (getattr(module, n).__doc__ or "").strip()]
    assert not undocumented, f"{name}: no docstring for {undocumented}"


def test_the_package_has_a_sizeable_api():
    assert len(MODULES) >= 20
    assert "torchrl_rgm.objectives.rgm" in MODULES and "torchrl_rgm.objectives._utils" not in MODULES
