"""RGM objectives as TorchRL :class:`~torchrl.objectives.LossModule` s."""
from .discriminator import DiscriminatorLoss
from .divergences import DIVERGENCES, FDivergence, get_divergence
from .reward_correction import reward_correction, reward_correction_objective
from .rgm import RGMLoss

__all__ = [
    "DIVERGENCES",
    "DiscriminatorLoss",
    "FDivergence",
    "RGMLoss",
    "get_divergence",
    "reward_correction",
    "reward_correction_objective",
]
