"""The data-sharing baselines (recipes/rgm_datasharing.py): IQL on the shared union, with each source's own
task reward (naive sharing) or relabelled by the target task's true reward (CDS-style oracle)."""
from __future__ import annotations

from .base import register
from .iql import IQL

__all__ = ["IQLShared", "IQLRelabeled"]


@register
class IQLShared(IQL):
    """Naive data sharing: each source keeps its own task's reward (unlabelled data: 0)."""

    name = "iql_shared"


@register
class IQLRelabeled(IQL):
    """The oracle: every shared transition relabelled by the target task's reward (it needs the reward
    function RGM does without)."""

    name = "iql_relabeled"
    relabels = True
