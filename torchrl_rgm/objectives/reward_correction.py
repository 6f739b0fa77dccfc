"""Upper level of RGM: learn the reward correction Δr by visitation matching."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.objectives.common import LossModule

from ._utils import (
    as_column,
    check_optional_positive,
    get_key,
    next_key,
    set_dice_hyperparameters,
    single_in_key,
    single_out_key,
)
from .divergences import FDivergence
from .rgm import evaluate_state_values, reward_correction

__all__ = ["RewardCorrectionLoss"]


class RewardCorrectionLoss(LossModule):
    r"""Upper level of RGM: move :math:`\Delta r` so that the induced visitation matches the expert's.

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

    If the batch already carries ``state_value``, ``("next", "state_value")`` and
    ``reward_correction`` written by :class:`~torchrl_rgm.objectives.rgm.RGMLoss` in the same update, those are
    reused (values detached) instead of evaluating the networks again.

    Args:
        reward_correction_network: reads ``(s, a, r~)``, writes the pre-``tanh`` correction.
        value_network: the lower level's ``V`` (not trained by this loss).

    Keyword Args:
        divergence, alpha, gamma, res_scale, advantage_clip: as in :class:`~torchrl_rgm.objectives.rgm.RGMLoss`
            (use the same values).
        log_ratio_clip (float or None): clamp of ``|log d^E/d^D|`` that keeps
            ``rho f(w / rho)`` finite for ``f = chi2``. Default 20 (a numerical guard;
            the paper has none).
        normalize_weights (bool): divide ``w`` by its batch mean before comparing it with
            ``rho`` (the gradient flows through the mean), so that only the *shape* of the
            induced visitation is matched: its mass is set by the Bellman flow, which ``Δr``
            cannot change with ``V`` held fixed. Pair it with a calibrated ratio,
            ``E_D[rho] = 1`` (:func:`torchrl_rgm.train.log_density_ratio` with
            ``normalize=True``). Default True; ``False`` keeps ``w`` unnormalised, as the paper writes it.
        reuse (bool): reuse the entries written by :class:`~torchrl_rgm.objectives.rgm.RGMLoss`. Default True.
    """

    @dataclass
    class _AcceptedKeys:
        """Keys of the input TensorDict.

        Attributes:
            observation, next_observation, action, reward, done: as in :class:`~torchrl_rgm.objectives.rgm.RGMLoss`.
            log_density_ratio (NestedKey): ``log d^E/d^D``. Default ``"log_density_ratio"``.
            state_value (NestedKey): ``V(s)`` reused from :class:`~torchrl_rgm.objectives.rgm.RGMLoss`.
                Default ``"state_value"``.
            reward_correction (NestedKey): ``Δr`` reused / written. Default ``"reward_correction"``.
        """

        observation: NestedKey = "observation"
        next_observation: NestedKey = ("next", "observation")
        action: NestedKey = "action"
        reward: NestedKey = ("next", "reward")
        done: NestedKey = ("next", "done")
        log_density_ratio: NestedKey = "log_density_ratio"
        state_value: NestedKey = "state_value"
        reward_correction: NestedKey = "reward_correction"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    out_keys = ["loss_reward_correction", "reward_correction_abs", "visitation_weight_mean"]

    def __init__(
        self,
        reward_correction_network: TensorDictModule,
        value_network: TensorDictModule,
        *,
        divergence: str | FDivergence = "kl",
        alpha: float = 0.5,
        gamma: float = 0.99,
        res_scale: float = 3.0,
        advantage_clip: float | None = 10.0,
        log_ratio_clip: float | None = 20.0,
        normalize_weights: bool = True,
        reuse: bool = True,
    ):
        super().__init__()
        set_dice_hyperparameters(
            self, divergence=divergence, alpha=alpha, gamma=gamma, res_scale=res_scale,
            advantage_clip=advantage_clip,
        )
        self.log_ratio_clip = check_optional_positive("log_ratio_clip", log_ratio_clip)
        self.normalize_weights = bool(normalize_weights)
        self.reuse = bool(reuse)
        self.reward_correction_network = reward_correction_network
        # V is not trained here: keep it out of this loss's parameters.
        self.__dict__["value_network"] = value_network
        self._value_in = single_in_key(value_network, "value network")
        self._value_out = single_out_key(value_network, "value network")
        self._correction_out = single_out_key(reward_correction_network, "reward-correction network")

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @property
    def in_keys(self):
        keys = self.tensor_keys
        return [keys.observation, keys.next_observation, keys.action, keys.reward,
                keys.done, keys.log_density_ratio]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.tensor_keys
        obs = get_key(self, tensordict, "observation")
        reward = as_column(get_key(self, tensordict, "reward")).to(obs.dtype)
        done = as_column(get_key(self, tensordict, "done")).to(obs.dtype)
        log_ratio = as_column(get_key(self, tensordict, "log_density_ratio")).to(obs.dtype)
        get_key(self, tensordict, "action")

        present = tensordict.keys(True)
        if self.reuse and keys.state_value in present and next_key(keys.state_value) in present:
            v = tensordict.get(keys.state_value).detach()
            v_next = tensordict.get(next_key(keys.state_value)).detach()
        else:
            next_obs = get_key(self, tensordict, "next_observation")
            with torch.no_grad():
                v, v_next = evaluate_state_values(
                    self.value_network, self._value_in, self._value_out, obs, next_obs
                )
        if self.reuse and keys.reward_correction in present:
            delta_r = tensordict.get(keys.reward_correction)
        else:
            delta_r = reward_correction(
                self.reward_correction_network, self._correction_out, tensordict, self.res_scale
            )
            tensordict.set(keys.reward_correction, delta_r)

        advantage = (reward + delta_r + self.gamma * (1.0 - done) * v_next - v) / self.alpha
        weight = self.divergence.visitation_weight(advantage, self.advantage_clip)
        if self.log_ratio_clip is not None:
            log_ratio = log_ratio.clamp(-self.log_ratio_clip, self.log_ratio_clip)
        clipped_adv = advantage if self.advantage_clip is None else advantage.clamp(max=self.advantage_clip)
        raw_mean = weight.mean()
        if self.normalize_weights:
            # compare the *shape* of w d^D with d^E: its mass is fixed by the Bellman flow, which
            # Δr cannot change with V held fixed; unnormalised, a w above ρ on most of D pushes
            # every Δr down together until tanh saturates while V chases the shift.
            mean = raw_mean.clamp(min=1e-30)
            weight = weight / mean
            clipped_adv = clipped_adv - mean.log()
        loss = self.divergence.expert_divergence(weight, log_ratio, clipped_adv).mean()
        return TensorDict(
            {
                "loss_reward_correction": loss,
                "reward_correction_abs": delta_r.abs().mean().detach(),
                "visitation_weight_mean": raw_mean.detach(),
            },
            [],
        )
