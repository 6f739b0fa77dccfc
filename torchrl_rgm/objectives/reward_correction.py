r"""Upper level of RGM: the reward correction :math:`\Delta r` and its visitation-matching objective.

:class:`~torchrl_rgm.objectives.rgm.RGMLoss` returns this objective as ``loss_reward_correction`` next to the lower
level's losses (one pass, one set of hyper-parameters); the functions here are its maths.

.. math::

    \Delta r &= \mathrm{res\_scale}\cdot\tanh(\text{net}(s, a, \tilde r)) \\
    w &= f^{*\prime}\!\left(\frac{\tilde r + \Delta r + \gamma(1-d)\,\bar V(s') - \bar V(s)}{\alpha}\right) \\
    L_{\Delta r} &= \mathbb{E}_D\!\left[\rho\, f\!\left(\frac{w}{\rho}\right)\right]
                  = D_f(w\, d^D \,\|\, d^E),\qquad \rho = \frac{d^E}{d^D} = e^{\log d^E/d^D}

with ``f`` shifted so that :math:`f'(1) = 0`; for KL that is
:math:`\mathbb{E}_D[w(\log w - \log\rho) - w + \rho]`, which equals the
:math:`\mathbb{E}_D[w(\log w - \log\rho)]` of the paper for normalised visitations but,
with ``V`` held fixed, does not drive every :math:`\Delta r` down to ``-res_scale``
(see ``tests/objectives/test_reward_correction.py``). :math:`\bar V` is the value
network held fixed: the gradient reaches the correction network only, through ``w``.
``log d^E/d^D`` is read per transition (written once by the frozen discriminator,
:meth:`~torchrl_rgm.objectives.discriminator.DiscriminatorLoss.log_density_ratio`).
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase

from ._utils import as_column
from .divergences import FDivergence

__all__ = ["correction_anchor", "reward_correction", "reward_correction_objective"]


def reward_correction(network, out_key, inputs: TensorDictBase, res_scale: float) -> torch.Tensor:
    r""":math:`\Delta r = \mathrm{res\_scale} \cdot \tanh(\text{net}(s, a, \tilde r))` on ``inputs`` (the
    network's in_keys)."""
    return res_scale * torch.tanh(as_column(network(inputs.select(*network.in_keys)).get(out_key)))


def correction_anchor(divergence: FDivergence, log_ratio: torch.Tensor, reward: torch.Tensor, alpha: float,
                      log_ratio_clip: float | None) -> torch.Tensor:
    r""":math:`\alpha f'(\rho) - \tilde r`: the upper level's minimiser with ``V`` at 0, where the lower level starts
    (:class:`~torchrl_rgm.objectives.RGMLoss` with ``correction_anchor``: ``w = rho`` before any learning)."""
    if log_ratio_clip is not None:
        log_ratio = log_ratio.clamp(-log_ratio_clip, log_ratio_clip)
    return alpha * divergence.weight_advantage(log_ratio.to(reward.dtype)) - reward


def reward_correction_objective(divergence: FDivergence, *, reward, delta_r, done, v, v_next, log_ratio, gamma: float,
                                alpha: float, advantage_clip: float | None, log_ratio_clip: float | None,
                                normalize_weights: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_Δr, mean w)`` with ``V`` and ``V(s')`` held fixed (pass them detached): the gradient reaches ``Δr`` only.

    ``log_ratio_clip`` clamps ``|log d^E/d^D|`` so that ``rho f(w / rho)`` stays finite for ``f = chi2`` (a
    numerical guard; the paper has none). ``normalize_weights`` divides ``w`` by its batch mean before comparing
    it with ``rho`` (the gradient flows through the mean), so that only the *shape* of the induced visitation
    is matched: its mass is set by the Bellman flow, which ``Δr`` cannot change with ``V`` held fixed; pair it
    with a calibrated ratio, ``E_D[rho] = 1`` (:func:`torchrl_rgm.train.log_density_ratio` with ``normalize``).
    """
    advantage = (reward + delta_r + gamma * (1.0 - done) * v_next - v) / alpha
    weight = divergence.visitation_weight(advantage, advantage_clip)
    if log_ratio_clip is not None:
        log_ratio = log_ratio.clamp(-log_ratio_clip, log_ratio_clip)
    clipped_adv = advantage if advantage_clip is None else advantage.clamp(max=advantage_clip)
    raw_mean = weight.mean()
    if normalize_weights:
        # compare the *shape* of w d^D with d^E: unnormalised, a w above rho on most of D pushes every Δr down
        # together until tanh saturates while V chases the shift.
        mean = raw_mean.clamp(min=1e-30)
        weight = weight / mean
        clipped_adv = clipped_adv - mean.log()
    return divergence.expert_divergence(weight, log_ratio, clipped_adv).mean(), raw_mean
