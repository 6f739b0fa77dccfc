"""Builders for the networks RGM trains (MLPs wrapped as TensorDict modules)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.data import Bounded
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal

__all__ = [
    "ScalarHead",
    "make_actor",
    "make_discriminator",
    "make_reward_correction_network",
    "make_value_network",
]


class ScalarHead(nn.Module):
    """``nn.Linear(in_features, 1)`` computed as a dot product.

    Same function and initialisation as ``nn.Linear``, but forward and backward are
    elementwise-and-reduce instead of ``K = 1`` / ``N = 1`` GEMMs, which are slow on CPU
    (in the RGM update the value head's backward GEMM alone cost more than a
    256x256 layer) and which ``torch.compile`` then fuses with their neighbours.
    """

    def __init__(self, in_features: int, device=None):
        super().__init__()
        reference = nn.Linear(in_features, 1, device=device)
        self.weight = nn.Parameter(reference.weight.detach().reshape(in_features).clone())
        self.bias = nn.Parameter(reference.bias.detach().reshape(()).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 even under bfloat16 autocast: values and Q-values of a few hundred would be
        # rounded to steps of 1-2 in bfloat16, the size of a reward — TD targets would drown in it.
        if torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return (x.float() @ self.weight + self.bias).unsqueeze(-1)
        return (x @ self.weight + self.bias).unsqueeze(-1)


class _ScalarMLP(nn.Module):
    """MLP trunk + :class:`ScalarHead`; several inputs are concatenated like TorchRL's ``MLP``."""

    def __init__(self, trunk: nn.Module, head: ScalarHead):
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(torch.cat(inputs, -1) if len(inputs) > 1 else inputs[0]))


def _mlp(in_features: int, out_features: int, hidden: Sequence[int], device=None) -> nn.Module:
    if out_features == 1 and len(hidden) > 0:
        trunk = MLP(
            in_features=in_features,
            out_features=hidden[-1],
            num_cells=list(hidden[:-1]),
            activation_class=nn.ReLU,
            activate_last_layer=True,
            device=device,
        )
        return _ScalarMLP(trunk, ScalarHead(hidden[-1], device=device))
    return MLP(
        in_features=in_features,
        out_features=out_features,
        num_cells=list(hidden),
        activation_class=nn.ReLU,
        device=device,
    )


def make_value_network(obs_dim: int, hidden: Sequence[int] = (256, 256), device=None) -> TensorDictModule:
    """``V(s)``: ``observation -> state_value``."""
    return TensorDictModule(_mlp(obs_dim, 1, hidden, device), ["observation"], ["state_value"])


def make_actor(obs_dim: int, action_dim: int, *, stochastic: bool = False, hidden: Sequence[int] = (256, 256),
               device=None) -> TensorDictModule:
    """Policy on ``[-1, 1]^action_dim``: deterministic (``tanh`` output) or tanh-Gaussian."""
    spec = Bounded(-torch.ones(action_dim), torch.ones(action_dim), (action_dim,), device=device)
    if not stochastic:
        net = nn.Sequential(_mlp(obs_dim, action_dim, hidden, device), nn.Tanh())
        module = TensorDictModule(net, ["observation"], ["action"])
        module.spec = spec
        return module
    net = nn.Sequential(_mlp(obs_dim, 2 * action_dim, hidden, device), NormalParamExtractor())
    params = TensorDictModule(net, ["observation"], ["loc", "scale"])
    return ProbabilisticActor(
        params,
        in_keys=["loc", "scale"],
        out_keys=["action"],
        spec=spec,
        distribution_class=TanhNormal,
        distribution_kwargs={"low": spec.space.low, "high": spec.space.high},
    )


def make_reward_correction_network(
    obs_dim: int, action_dim: int, hidden: Sequence[int] = (256, 256), device=None, *, zero_init: bool = False
) -> TensorDictModule:
    """Pre-``tanh`` correction from ``(s, a, r~)``: ``-> reward_correction_logit``.

    ``zero_init``: the output layer starts at zero, so ``Δr = 0`` everywhere at the start and the
    given reward ``r~`` is the prior the upper level moves away from (with the default
    initialisation ``Δr`` starts as a random function of up to about ±1 standardised reward).
    """
    net = _mlp(obs_dim + action_dim + 1, 1, hidden, device)
    if zero_init:
        head = net.head if isinstance(net, _ScalarMLP) else net[-1]
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
    return TensorDictModule(net, ["observation", "action", ("next", "reward")], ["reward_correction_logit"])


def make_discriminator(obs_dim: int, action_dim: int, *, state_only: bool = False, hidden: Sequence[int] = (256, 256),
                       device=None) -> TensorDictModule:
    """Logit of ``c(s, a)`` (or ``c(s)``): ``-> discriminator_logit``."""
    in_keys = ["observation"] if state_only else ["observation", "action"]
    in_features = obs_dim if state_only else obs_dim + action_dim
    return TensorDictModule(_mlp(in_features, 1, hidden, device), in_keys, ["discriminator_logit"])
