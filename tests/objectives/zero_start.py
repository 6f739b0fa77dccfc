"""Networks at RGM's anchored start, shared by the tests: V ≡ 0 and the correction network's output ≡ 0."""
import torch
from tensordict.nn import TensorDictModule
from torch import nn


def zero_start_networks(obs_dim: int):
    """``(value, actor, correction, net)``: linear V and correction (its ``net``, on ``[obs, action, reward]``, output
    ``logit``) zero-initialised, and a linear actor; one-dimensional actions."""
    actor = TensorDictModule(nn.Linear(obs_dim, 1), ["observation"], ["action"])
    value = TensorDictModule(nn.Linear(obs_dim, 1), ["observation"], ["state_value"])
    net = nn.Linear(obs_dim + 2, 1)
    for layer in (value.module, net):
        nn.init.zeros_(layer.weight), nn.init.zeros_(layer.bias)

    class Correction(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, obs, action, reward):
            return self.net(torch.cat([obs, action, reward], -1))

    correction = TensorDictModule(Correction(), ["observation", "action", ("next", "reward")], ["logit"])
    return value, actor, correction, net
