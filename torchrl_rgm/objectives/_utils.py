"""Shared helpers for the RGM losses: argument checks and key access."""
from __future__ import annotations

import math

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey

from .divergences import get_divergence


class MissingKeyError(KeyError):
    """A declared entry is missing from the input TensorDict (printed as plain text, not repr)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not ok or not math.isfinite(value):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}.")
    return value


def check_gamma(gamma: float) -> float:
    gamma = float(gamma)
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma must lie in the open interval (0, 1), got {gamma}.")
    return gamma


def check_optional_positive(name: str, value: float | None) -> float | None:
    return None if value is None else check_positive(name, value)


def read_entry(loss, tensordict: TensorDictBase, key: NestedKey, field: str, what: str = "the entry") -> torch.Tensor:
    """``tensordict[key]`` (``key``: where ``loss.tensor_keys.<field>`` points), with an error that says how to fix a miss."""
    value = tensordict.get(key, None)
    if value is None:
        raise MissingKeyError(
            f"{type(loss).__name__} needs {what} {key!r} (tensor key '{field}') in its input TensorDict, which only "
            f"has {sorted(map(str, tensordict.keys(True, True)))}. Add it, or point the loss at another entry with "
            f"loss.set_keys({field}=<key>)."
        )
    return value


def single_key(module: TensorDictModuleBase, direction: str, what: str) -> NestedKey:
    """The one entry ``module`` reads (``direction="in"``: so that ``V`` can be evaluated once on the stacked
    ``[s0; s; s']`` batch) or writes (``"out"``)."""
    keys = list(module.in_keys if direction == "in" else module.out_keys)
    if len(keys) != 1:
        verb, fix = (("read", "so that it can be evaluated once on the stacked [s0; s; s'] batch") if direction == "in"
                     else ("write", "wrap it so that it outputs a single tensor"))
        raise ValueError(f"The {what} must {verb} exactly one entry (its {direction}_keys are {keys}); {fix}.")
    return keys[0]


def as_column(x: torch.Tensor) -> torch.Tensor:
    """Give per-transition scalars the shape ``[*B, 1]`` used throughout."""
    return x.unsqueeze(-1) if x.ndim == 1 else x


def next_key(key: NestedKey) -> tuple:
    """``("next", *key)``: where TorchRL keeps the next step's entry."""
    return ("next", key) if isinstance(key, str) else ("next", *key)


def set_dice_hyperparameters(loss, *, divergence, alpha, gamma, res_scale, advantage_clip) -> None:
    """Validate and store the hyper-parameters shared by the two levels of RGM."""
    loss.divergence = get_divergence(divergence)
    loss.alpha = check_positive("alpha", alpha)
    loss.gamma = check_gamma(gamma)
    loss.res_scale = check_positive("res_scale", res_scale, allow_zero=True)
    loss.advantage_clip = check_optional_positive("advantage_clip", advantage_clip)


def reparameterised_sample(dist, tensordict: TensorDictBase, key: NestedKey) -> torch.Tensor:
    """``dist.rsample()`` of a tanh-Gaussian, with ``tensordict[key]`` as the standard-normal draw when it has one."""
    if key not in tensordict.keys(True):
        return dist.rsample()
    root = dist.root_dist  # the Normal under the tanh: rsample is loc + noise * scale, then the transforms
    x = root.loc + tensordict.get(key).to(root.loc.dtype) * root.scale
    for transform in dist.transforms:
        x = transform(x)
    return x
