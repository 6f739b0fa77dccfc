"""Expert-vs-union discriminator: the log density ratio ``log d^E / d^D``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch.nn import functional as F
from torchrl.objectives.common import LossModule

from ._utils import MissingKeyError, check_positive, read_entry, single_key

__all__ = ["DiscriminatorLoss"]


class DiscriminatorLoss(LossModule):
    r"""Binary classifier of expert (label 1) against union (label 0) transitions.

    .. math::

        L_c = -\mathbb{E}_{D^E}[\log \sigma(c(x))] - \mathbb{E}_{D}[\log(1 - \sigma(c(x)))]
              + \lambda\,\mathbb{E}_{\hat x}[(\lVert\nabla_{\hat x} c(\hat x)\rVert_2 - 1)^2],

    with :math:`\hat x = \epsilon x^E + (1-\epsilon) x^D`, one
    :math:`\epsilon \sim U[0,1]` per pair of samples. ``x`` is ``(s, a)`` or ``s``
    alone, whatever the network reads (its ``in_keys``). Both classes weigh the
    same whatever their batch sizes, so at the optimum the logit is
    :math:`c(x) = \log d^E(x) / d^D(x)`, written by :meth:`log_density_ratio`.

    TorchRL's :class:`~torchrl.objectives.GAILLoss` does not fit here: it works on
    probabilities (not logits, so the log-ratio loses precision where it matters),
    mixes expert and collector samples element by element and needs equal batch sizes.

    Args:
        discriminator_network: a module reading ``(observation, action)`` (or
            ``observation`` only) and writing one logit per transition.

    Keyword Args:
        gradient_penalty (float): :math:`\lambda`; 0 switches the penalty off. Default 10.

    The input TensorDict holds two sub-TensorDicts of any batch sizes,
    ``"expert"`` and ``"union"`` (renameable with :meth:`~torchrl.objectives.LossModule.set_keys`).
    """

    @dataclass
    class _AcceptedKeys:
        """Keys of the input TensorDict.

        Attributes:
            expert (NestedKey): sub-TensorDict of expert transitions. Default ``"expert"``.
            union (NestedKey): sub-TensorDict of union transitions. Default ``"union"``.
            log_density_ratio (NestedKey): where :meth:`log_density_ratio` writes
                ``log d^E/d^D``. Default ``"log_density_ratio"``.
        """

        expert: NestedKey = "expert"
        union: NestedKey = "union"
        log_density_ratio: NestedKey = "log_density_ratio"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    out_keys = ["loss_discriminator", "loss_gradient_penalty", "accuracy_expert", "accuracy_union", "logit_expert",
                "logit_union"]

    def __init__(self, discriminator_network: TensorDictModule, *, gradient_penalty: float = 10.0):
        super().__init__()
        self.discriminator_network = discriminator_network
        self.gradient_penalty = check_positive("gradient_penalty", gradient_penalty, allow_zero=True)
        self._logit_key = single_key(discriminator_network, "out", "discriminator network")

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @property
    def in_keys(self):
        return [self.tensor_keys.expert, self.tensor_keys.union]

    def _inputs(self, tensordict: TensorDictBase, which: str) -> TensorDictBase:
        # e.g. TensorDict({"expert": expert_batch, "union": union_batch})
        sub = read_entry(self, tensordict, getattr(self.tensor_keys, which), which, f"a sub-TensorDict of {which} transitions")
        missing = [k for k in self.discriminator_network.in_keys if k not in sub.keys(True)]
        if missing:
            raise MissingKeyError(
                f"The {which} batch lacks {missing}, which the discriminator reads "
                f"(its in_keys are {list(self.discriminator_network.in_keys)})."
            )
        return sub.select(*self.discriminator_network.in_keys)

    def _logits(self, inputs: TensorDictBase) -> torch.Tensor:
        return self.discriminator_network(inputs.copy())[self._logit_key]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        expert = self._inputs(tensordict, "expert")
        union = self._inputs(tensordict, "union")
        logit_e = self._logits(expert)
        logit_u = self._logits(union)
        loss = F.binary_cross_entropy_with_logits(
            logit_e, torch.ones_like(logit_e)
        ) + F.binary_cross_entropy_with_logits(logit_u, torch.zeros_like(logit_u))
        out = {"loss_discriminator": loss}
        if self.gradient_penalty > 0:
            out["loss_gradient_penalty"] = self.gradient_penalty * self._penalty(expert, union)
        else:
            out["loss_gradient_penalty"] = torch.zeros((), device=loss.device)
        out.update(
            accuracy_expert=(logit_e > 0).float().mean().detach(),
            accuracy_union=(logit_u < 0).float().mean().detach(),
            logit_expert=logit_e.mean().detach(),
            logit_union=logit_u.mean().detach(),
        )
        return TensorDict(out, [])

    def _penalty(self, expert: TensorDictBase, union: TensorDictBase) -> torch.Tensor:
        n = min(expert.shape[0], union.shape[0])
        first = expert.get(self.discriminator_network.in_keys[0])
        eps = torch.rand(n, 1, device=first.device, dtype=first.dtype)
        keys = list(self.discriminator_network.in_keys)
        mixed = {}
        for key in keys:
            xe, xu = expert.get(key)[:n], union.get(key)[:n]
            mixed[key] = (eps * xe + (1 - eps) * xu).detach().requires_grad_(True)
        logits = self.discriminator_network(TensorDict(mixed, [n]))[self._logit_key]
        grads = torch.autograd.grad(
            logits.sum(), [mixed[k] for k in keys], create_graph=True
        )
        sq_norm = sum(g.pow(2).flatten(1).sum(-1) for g in grads)
        norm = (sq_norm + 1e-12).sqrt()
        return (norm - 1.0).pow(2).mean()

    @torch.no_grad()
    def log_density_ratio(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Write :math:`\\log d^E/d^D` (the logit) at the ``log_density_ratio`` key.

        ``tensordict`` is a batch of transitions with the discriminator's inputs;
        it is returned with the new entry.
        """
        missing = [k for k in self.discriminator_network.in_keys if k not in tensordict.keys(True)]
        if missing:
            raise MissingKeyError(
                f"log_density_ratio needs {missing} in the TensorDict "
                f"(the discriminator's in_keys are {list(self.discriminator_network.in_keys)})."
            )
        logits = self._logits(tensordict.select(*self.discriminator_network.in_keys))
        tensordict.set(self.tensor_keys.log_density_ratio, logits)
        return tensordict
