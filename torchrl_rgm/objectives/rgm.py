"""Lower level of RGM: pessimistic RL with the corrected reward, in DICE dual form."""
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
    check_positive,
    get_key,
    next_key,
    set_dice_hyperparameters,
    single_in_key,
    single_out_key,
)
from .divergences import FDivergence

__all__ = ["RGMLoss", "evaluate_state_values", "reward_correction"]


def evaluate_state_values(value_network, value_in_key, value_out_key, *observations):
    """``V`` on several observation batches with one forward pass on their stack."""
    sizes = [o.shape[0] for o in observations]
    stacked = torch.cat(observations, 0)
    values = value_network(TensorDict({value_in_key: stacked}, [stacked.shape[0]]))
    return as_column(values.get(value_out_key)).split(sizes, 0)


def reward_correction(network, out_key, tensordict, res_scale: float) -> torch.Tensor:
    """:math:`\\Delta r = \\mathrm{res\\_scale} \\cdot \\tanh(\\text{net}(s, a, \\tilde r))`."""
    inputs = tensordict.select(*network.in_keys)
    return res_scale * torch.tanh(as_column(network(inputs).get(out_key)))


class RGMLoss(LossModule):
    r"""Lower level of RGM: DICE value loss and weighted behaviour cloning.

    .. math::

        L_V &= (1-\gamma)\,\mathbb{E}_{s_0\sim\mu_0}[V(s_0)]
               + \alpha\,\mathbb{E}_{(s,a,s')\sim D}[f^*(A)],\qquad
        A = \frac{\tilde r + \Delta r + \gamma(1-d)V(s') - V(s)}{\alpha} \\
        w &= f^{*\prime}(A)\quad(= d^{\pi^*}/d^D) \\
        L_\pi &= \mathbb{E}_D[\bar w\,\lVert\pi(s)-a\rVert^2]\ \text{(deterministic)}
        \quad\text{or}\quad
        -\mathbb{E}_D[\bar w \log\pi(a|s)] + \beta\,\mathbb{E}[\log\pi(\tilde a|s)]
        \ \text{(tanh-Gaussian)} \\
        L_\beta &= -\log\beta\;\mathbb{E}[\log\pi(\tilde a|s) + \bar{\mathcal H}],\qquad
        \bar{\mathcal H} = -|\mathcal A|

    :math:`\bar w` is ``w`` detached, clipped at ``weight_clip`` and (optionally)
    divided by its batch mean. :math:`\Delta r` (from ``reward_correction_network``,
    if given) is used detached: only :class:`~torchrl_rgm.objectives.reward_correction.RewardCorrectionLoss` trains it.
    Absorbing states need no special case: the data layer turns a terminal
    transition into ``s -> s_abs`` (``d = 0``) plus a self-loop with ``d = 1``.

    Every call also writes into the input TensorDict ``state_value`` and
    ``("next", "state_value")`` (with their graph), ``visitation_weight`` (``w``,
    detached) and, with a correction network, ``reward_correction`` (with its
    graph), so that :class:`~torchrl_rgm.objectives.reward_correction.RewardCorrectionLoss` on the same batch
    reuses them.

    Args:
        value_network: reads the observation, writes ``V(s)``.
        actor_network: a deterministic actor (writes the action) or a
            probabilistic actor (``get_dist``), e.g. a tanh-Gaussian.
        reward_correction_network: optional; reads ``(s, a, r~)`` and writes the
            pre-``tanh`` correction.

    Keyword Args:
        divergence (str): ``"kl"`` (paper, MuJoCo), ``"chi2"`` (robomimic),
            ``"soft_chi2"`` or ``"kl_logmeanexp"``. Default ``"kl"``.
        alpha (float): pessimism :math:`\alpha`. Default 0.5.
        gamma (float): discount. Default 0.99.
        res_scale (float): bound on :math:`|\Delta r|`. Default 3.
        advantage_clip (float or None): ``A`` above it continues ``f*`` linearly
            and caps ``w``. Default 10.
        weight_clip (float or None): cap on the BC weights. Default 100.
        normalize_weights (bool): divide the BC weights by their batch mean. Default True.
        entropy_coef ("auto", float or None): tanh-Gaussian actors only; "auto"
            learns it towards ``target_entropy``. Default "auto".
        target_entropy (float or "auto"): "auto" is ``-action_dim``.
        action_dim (int, optional): needed for "auto" when the actor has no spec.
        initial_entropy_coef (float): starting :math:`\beta`. Default 1.
    """

    @dataclass
    class _AcceptedKeys:
        """Keys of the input TensorDict.

        Attributes:
            observation (NestedKey): ``s``. Default ``"observation"``.
            next_observation (NestedKey): ``s'``. Default ``("next", "observation")``.
            initial_observation (NestedKey): ``s0 ~ mu0``, same batch size.
                Default ``"initial_observation"``.
            action (NestedKey): dataset action. Default ``"action"``.
            reward (NestedKey): imperfect reward ``r~``. Default ``("next", "reward")``.
            done (NestedKey): terminal flag (not timeouts). Default ``("next", "done")``.
            is_expert (NestedKey): optional flag for the weight diagnostics.
                Default ``"is_expert"``.
            state_value (NestedKey): where ``V`` is written. Default ``"state_value"``.
            reward_correction (NestedKey): where ``Δr`` is written. Default ``"reward_correction"``.
            visitation_weight (NestedKey): where ``w`` is written. Default ``"visitation_weight"``.
        """

        observation: NestedKey = "observation"
        next_observation: NestedKey = ("next", "observation")
        initial_observation: NestedKey = "initial_observation"
        action: NestedKey = "action"
        reward: NestedKey = ("next", "reward")
        done: NestedKey = ("next", "done")
        is_expert: NestedKey = "is_expert"
        state_value: NestedKey = "state_value"
        reward_correction: NestedKey = "reward_correction"
        visitation_weight: NestedKey = "visitation_weight"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    out_keys = [
        "loss_value",
        "loss_actor",
        "loss_entropy_coef",
        "entropy_coef",
        "weight_expert",
        "weight_union",
        "corrected_reward",
        "reward_correction",
        "advantage",
        "initial_value",
    ]

    def __init__(
        self,
        value_network: TensorDictModule,
        actor_network: TensorDictModule,
        reward_correction_network: TensorDictModule | None = None,
        *,
        divergence: str | FDivergence = "kl",
        alpha: float = 0.5,
        gamma: float = 0.99,
        res_scale: float = 3.0,
        advantage_clip: float | None = 10.0,
        weight_clip: float | None = 100.0,
        normalize_weights: bool = True,
        entropy_coef: str | float | None = "auto",
        target_entropy: str | float = "auto",
        action_dim: int | None = None,
        initial_entropy_coef: float = 1.0,
    ):
        super().__init__()
        set_dice_hyperparameters(
            self, divergence=divergence, alpha=alpha, gamma=gamma, res_scale=res_scale,
            advantage_clip=advantage_clip,
        )
        self.weight_clip = check_optional_positive("weight_clip", weight_clip)
        self.normalize_weights = bool(normalize_weights)

        self.value_network = value_network
        self.actor_network = actor_network
        self.reward_correction_network = reward_correction_network
        self._value_in = single_in_key(value_network, "value network")
        self._value_out = single_out_key(value_network, "value network")
        if reward_correction_network is not None:
            self._correction_out = single_out_key(reward_correction_network, "reward-correction network")

        self.stochastic = hasattr(actor_network, "get_dist")
        if not self.stochastic:
            self._actor_out = single_out_key(actor_network, "deterministic actor")
        self._init_entropy(entropy_coef, target_entropy, action_dim, initial_entropy_coef)

    def _init_entropy(self, entropy_coef, target_entropy, action_dim, initial_entropy_coef):
        self.learn_entropy_coef = False
        self.use_entropy = False
        if not self.stochastic or entropy_coef is None:
            self.register_buffer("log_entropy_coef", torch.tensor(float("-inf")))
            return
        if entropy_coef == "auto":
            initial = check_positive("initial_entropy_coef", initial_entropy_coef)
            self.log_entropy_coef = torch.nn.Parameter(torch.tensor(initial).log())
            self.learn_entropy_coef = True
        elif isinstance(entropy_coef, (int, float)):
            value = check_positive("entropy_coef", entropy_coef, allow_zero=True)
            self.register_buffer("log_entropy_coef", torch.tensor(value).log())
        else:
            raise ValueError(f"entropy_coef must be 'auto', a number ≥ 0 or None, got {entropy_coef!r}.")
        self.use_entropy = entropy_coef == "auto" or entropy_coef > 0
        if target_entropy == "auto":
            if action_dim is None:
                spec = getattr(self.actor_network, "spec", None)
                if spec is not None and hasattr(spec, "keys"):  # Composite: the action leaf
                    out_keys = list(getattr(self.actor_network, "out_keys", ["action"]))
                    key = "action" if "action" in out_keys else out_keys[-1]
                    spec = spec.get(key, None) if key in spec.keys(True) else None
                shape = getattr(spec, "shape", None) if spec is not None else None
                if shape is None or len(shape) == 0:
                    raise ValueError(
                        "target_entropy='auto' needs the action dimension: pass action_dim=... "
                        "or give the actor an action spec."
                    )
                action_dim = int(shape[-1])
            target_entropy = -float(action_dim)
        self.target_entropy = float(target_entropy)

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @property
    def in_keys(self):
        keys = self.tensor_keys
        return [keys.observation, keys.next_observation, keys.initial_observation,
                keys.action, keys.reward, keys.done]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs = get_key(self, tensordict, "observation")
        next_obs = get_key(self, tensordict, "next_observation")
        init_obs = get_key(self, tensordict, "initial_observation")
        action = get_key(self, tensordict, "action")
        reward = as_column(get_key(self, tensordict, "reward")).to(obs.dtype)
        done = as_column(get_key(self, tensordict, "done")).to(obs.dtype)

        v0, v, v_next = evaluate_state_values(
            self.value_network, self._value_in, self._value_out, init_obs, obs, next_obs
        )
        keys = self.tensor_keys
        tensordict.set(keys.state_value, v)
        tensordict.set(next_key(keys.state_value), v_next)
        if self.reward_correction_network is not None:
            delta_r = reward_correction(
                self.reward_correction_network, self._correction_out, tensordict, self.res_scale
            )
            tensordict.set(keys.reward_correction, delta_r)
            corrected = reward + delta_r.detach()
        else:
            delta_r = torch.zeros_like(reward)
            corrected = reward

        advantage = (corrected + self.gamma * (1.0 - done) * v_next - v) / self.alpha
        loss_value = (1.0 - self.gamma) * v0.mean() + self.alpha * self.divergence.dual_term(
            advantage, self.advantage_clip
        )
        weight = self.divergence.visitation_weight(advantage.detach(), self.advantage_clip)
        tensordict.set(keys.visitation_weight, weight)

        bc_weight = weight if self.weight_clip is None else weight.clamp(max=self.weight_clip)
        if self.normalize_weights:
            bc_weight = bc_weight / bc_weight.mean().clamp(min=1e-8)
        loss_actor, loss_entropy_coef = self._actor_losses(tensordict, obs, action, bc_weight)

        out = {
            "loss_value": loss_value,
            "loss_actor": loss_actor,
            "entropy_coef": self.log_entropy_coef.detach().exp(),
            "corrected_reward": corrected.mean().detach(),
            "reward_correction": delta_r.mean().detach(),
            "advantage": advantage.mean().detach(),
            "initial_value": v0.mean().detach(),
        }
        if self.learn_entropy_coef:
            out["loss_entropy_coef"] = loss_entropy_coef
        if keys.is_expert in tensordict.keys(True):
            is_expert = as_column(tensordict.get(keys.is_expert)).to(weight.dtype)
            out["weight_expert"] = (weight * is_expert).sum() / is_expert.sum().clamp(min=1.0)
            out["weight_union"] = (weight * (1 - is_expert)).sum() / (1 - is_expert).sum().clamp(min=1.0)
        return TensorDict(out, [])

    def _actor_losses(self, tensordict, obs, action, bc_weight):
        actor_in = tensordict.select(*self.actor_network.in_keys)
        if not self.stochastic:
            predicted = self.actor_network(actor_in).get(self._actor_out)
            error = (predicted - action).pow(2).sum(-1, keepdim=True)
            return (bc_weight * error).mean(), None
        dist = self.actor_network.get_dist(actor_in)
        eps = 1e-5
        log_prob = as_column(dist.log_prob(action.clamp(-1 + eps, 1 - eps)))
        loss_actor = -(bc_weight * log_prob).mean()
        if not self.use_entropy:
            return loss_actor, None
        sample = dist.rsample()
        sample_log_prob = as_column(dist.log_prob(sample))
        loss_actor = loss_actor + self.log_entropy_coef.detach().exp() * sample_log_prob.mean()
        loss_coef = None
        if self.learn_entropy_coef:
            loss_coef = -self.log_entropy_coef * (sample_log_prob.detach().mean() + self.target_entropy)
        return loss_actor, loss_coef
