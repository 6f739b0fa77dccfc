"""The algorithms the recipes train, one module each, chosen by ``algo.name`` from :data:`ALGORITHMS`.

============= ==================================================== ============ =============
name          learns from                                          reads reward discriminator
============= ==================================================== ============ =============
rgm           the union, its reward corrected by Δr                yes          yes
smodice       the union, the discriminator's log-ratio as reward   no           yes
dwbc          the union, BC weighted by the discriminator's ratio  no           yes
bc            the union, plain BC                                  no           no
iql           the union with its reward (TorchRL IQLLoss)          yes          no
td3bc         the union with its reward (TorchRL TD3BCLoss)        yes          no
iql_shared    shared data with each source's own reward (IQL)      yes          no
iql_relabeled shared data relabelled by the target's reward (IQL)  yes          no
============= ==================================================== ============ =============

Adding one: a module here with an :class:`Algorithm` subclass decorated by :func:`register` (every module of
this package is imported below, which registers it) and ``recipes/config/algo/<name>.yaml`` with its fields
(recipes/README.md, "Adding an algorithm").
"""
import importlib
import pkgutil

from .base import ALGORITHMS, Algorithm, AlgorithmError, Learner, check_positive, get_algorithm, register

__all__ = ["ALGORITHMS", "Algorithm", "AlgorithmError", "Learner", "check_positive", "get_algorithm", "register"]

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")  # each module registers its algorithms
