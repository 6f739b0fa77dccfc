"""RGM as one TorchRL loss: the lower level (pessimistic RL with the corrected reward, in DICE dual form, and
weighted behaviour cloning) and the upper level (the reward correction Δr) on the same batch."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey, unravel_key
from torchrl.objectives.common import LossModule

from ._utils import (as_column, check_optional_positive, check_positive, next_key, read_entry, reparameterised_sample,
                     set_dice_hyperparameters, single_key)
from .divergences import FDivergence
from .reward_correction import correction_anchor, reward_correction, reward_correction_objective

__all__ = ["RGMLoss", "evaluate_state_values", "reward_correction"]


def evaluate_state_values(value_network, value_in_key, value_out_key, *observations):
    """``V`` on several observation batches with one forward pass on their stack."""
    sizes = [o.shape[0] for o in observations]
    stacked = torch.cat(observations, 0)
    values = value_network(TensorDict({value_in_key: stacked}, [stacked.shape[0]]))
    return as_column(values.get(value_out_key)).split(sizes, 0)


class RGMLoss(LossModule):
    r"""RGM in one loss: the DICE value loss and weighted behaviour cloning (lower level) and, with a
    reward-correction network, the visitation-matching loss of :math:`\Delta r` (upper level).

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
        \bar{\mathcal H} = -|\mathcal A| \\
        L_{\Delta r} &= D_f(w\, d^D \,\|\, d^E)\quad\text{with } V \text{ held fixed}
        \ (:mod:`~torchrl_rgm.objectives.reward_correction`)

    :math:`\bar w` is ``w`` detached, clipped at ``weight_clip`` and (optionally) divided by its batch mean.
    Each term's gradient reaches its own network only: :math:`L_V` uses :math:`\Delta r` detached,
    :math:`L_{\Delta r}` uses ``V`` detached, :math:`L_\pi` uses ``w`` detached; so the summed losses can be
    stepped by one optimiser with a parameter group (and learning rate) per network, as
    :class:`~torchrl_rgm.train.RGMUpdate` does, or by one optimiser per term. ``V`` is evaluated once, on the
    stacked ``[s0; s; s']``. The loss writes nothing into its input; :meth:`transition_values` returns the
    per-transition ``V``, ``Δr``, corrected reward and ``w`` for diagnostics. Absorbing states need no special
    case: the data layer turns a terminal transition into ``s -> s_abs`` (``d = 0``) plus a self-loop with ``d = 1``.

    One loss rather than two: the two levels share the batch, ``V`` and every hyper-parameter; as two losses they
    had to hand graph-carrying tensors to each other through the batch and be configured alike by hand.
    Without a correction network it is the lower level alone (SMODICE-style imitation when the reward is the
    discriminator's log-ratio).

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
        correction_normalize_weights (bool): the upper level compares ``w`` divided by its batch mean with
            ``rho`` (:func:`~torchrl_rgm.objectives.reward_correction.reward_correction_objective`); False
            compares raw ``w``, as the paper writes it. Default True.
        log_ratio_clip (float or None): clamp of ``|log d^E/d^D|`` in the upper level. Default 20.
        correction_anchor (bool): :math:`\Delta r = \alpha f'(\rho) - \tilde r + \mathrm{res\_scale}\tanh(\text{net})`,
            centred at the upper level's minimiser for ``V = 0`` (``w = rho`` at the start); False (paper): at 0.
        entropy_coef ("auto", float or None): tanh-Gaussian actors only; "auto"
            learns it towards ``target_entropy``. Default "auto".
        target_entropy (float or "auto"): "auto" is ``-action_dim``.
        action_dim (int, optional): needed for "auto" when the actor has no spec.
        initial_entropy_coef (float): starting :math:`\beta`. Default 1.
    """

    @dataclass
    class _AcceptedKeys:
        """Keys of the input TensorDict, TorchRL's conventions: ``reward`` and ``done`` are read under ``"next"``
        (``("next", reward)``), as is the next observation (``("next", observation)``).

        The networks read their inputs through these keys too: a network whose in_key is the default entry of a
        field (``"observation"``, ``"action"``, ``("next", "reward")``) is given the entry this loss's key for
        that field names, so ``set_keys(observation="pixels_state")`` reaches V, the actor and Δr alike.

        Attributes:
            observation (NestedKey): ``s``; ``s'`` is ``("next", observation)``. Default ``"observation"``.
            initial_observation (NestedKey): ``s0 ~ mu0``, same batch size. Default ``"initial_observation"``.
            action (NestedKey): dataset action. Default ``"action"``.
            reward (NestedKey): imperfect reward ``r~``, under ``"next"``. Default ``"reward"``.
            done (NestedKey): terminal flag (not timeouts), under ``"next"``. Default ``"done"``.
            log_density_ratio (NestedKey): ``log d^E/d^D`` (read with a correction network only).
                Default ``"log_density_ratio"``.
            is_expert (NestedKey): optional flag for the weight diagnostics. Default ``"is_expert"``.
            actor_noise (NestedKey): optional standard-normal noise, shaped like the action, for the tanh-Gaussian
                actor's reparameterised sample in the entropy term; absent, the sample draws it from torch's global
                RNG. :class:`~torchrl_rgm.train.RGMUpdate` writes it from its own generator, so that a run's noise
                is part of its state (exact resume) and a vectorised group can give each run the noise it would
                draw alone. Default ``"actor_noise"``.
            extraction (NestedKey): optional sub-TensorDict of transitions drawn from ``D`` in proportion to their
                weight ``w`` (same entries as the batch, same size):
                :meth:`~torchrl_rgm.sampling.UnionReplayBuffer.set_extraction_weights`. Present, the actor's loss is
                plain behaviour cloning on it — ``E_{w d^D}[ℓ]``, the weighted objective itself, without the
                variance of a uniform batch whose weight sits on a few rows. Default ``"extraction"``.
        """

        observation: NestedKey = "observation"
        initial_observation: NestedKey = "initial_observation"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        log_density_ratio: NestedKey = "log_density_ratio"
        is_expert: NestedKey = "is_expert"
        actor_noise: NestedKey = "actor_noise"
        extraction: NestedKey = "extraction"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    out_keys = ["loss_value", "loss_actor", "loss_entropy_coef", "loss_reward_correction", "entropy_coef",
                "weight_expert", "weight_union", "corrected_reward", "reward_correction", "reward_correction_abs",
                "visitation_weight_mean", "advantage", "initial_value"]

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
        correction_normalize_weights: bool = True,
        log_ratio_clip: float | None = 20.0,
        correction_anchor: bool = False,
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
        self.correction_normalize_weights = bool(correction_normalize_weights)
        self.log_ratio_clip = check_optional_positive("log_ratio_clip", log_ratio_clip)
        if correction_anchor and reward_correction_network is None:
            raise ValueError("correction_anchor centres the reward correction: it needs a reward_correction_network.")
        self.correction_anchor = bool(correction_anchor)

        self.value_network = value_network
        self.actor_network = actor_network
        self.reward_correction_network = reward_correction_network
        self._value_in = single_key(value_network, "in", "value network")
        self._value_out = single_key(value_network, "out", "value network")
        if reward_correction_network is not None:
            self._correction_out = single_key(reward_correction_network, "out", "reward-correction network")

        self.stochastic = hasattr(actor_network, "get_dist")
        if not self.stochastic:
            self._actor_out = single_key(actor_network, "out", "deterministic actor")
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

    # ---- keys -------------------------------------------------------------------------------------------
    def _entries(self) -> dict:
        """Each network in_key that is a field's default entry → the entry this loss reads for that field."""
        k = self.tensor_keys
        return {"observation": k.observation, ("next", "observation"): next_key(k.observation), "action": k.action,
                ("next", "reward"): next_key(k.reward), ("next", "done"): next_key(k.done)}

    @staticmethod
    def _fields() -> dict:
        """Each field's default entry → the field's name (for error messages)."""
        return {"observation": "observation", ("next", "observation"): "observation", "action": "action",
                ("next", "reward"): "reward", ("next", "done"): "done"}

    def _read(self, tensordict: TensorDictBase, key: NestedKey, field: str) -> torch.Tensor:
        return read_entry(self, tensordict, key, field)

    def _network_input(self, network, tensordict: TensorDictBase) -> TensorDictBase:
        """The entries ``network`` reads, taken from where this loss's keys point."""
        entries, fields = self._entries(), self._fields()
        keys = [unravel_key(key) for key in network.in_keys]
        sources = [entries.get(key, key) for key in keys]
        values = [self._read(tensordict, src, fields.get(key, str(key))) for key, src in zip(keys, sources)]
        if sources == keys:
            return tensordict.select(*network.in_keys)
        return TensorDict(dict(zip(network.in_keys, values)), tensordict.batch_size)

    @property
    def in_keys(self):
        """What the loss reads: its own keys and, through them, its networks' inputs."""
        k, entries = self.tensor_keys, self._entries()
        keys = [k.observation, next_key(k.observation), k.initial_observation, k.action, next_key(k.reward),
                next_key(k.done)]
        for network in (self.actor_network, self.reward_correction_network):
            if network is not None:
                keys += [entries.get(unravel_key(key), key) for key in network.in_keys]
        if self.reward_correction_network is not None:
            keys.append(k.log_density_ratio)
        return list(dict.fromkeys(unravel_key(key) for key in keys))

    # ---- the losses -------------------------------------------------------------------------------------
    def _lower_level(self, tensordict: TensorDictBase) -> dict:
        """``V(s0), V(s), V(s')``, ``Δr`` (with its graph), the corrected reward and the advantage."""
        k = self.tensor_keys
        obs = self._read(tensordict, k.observation, "observation")
        next_obs = self._read(tensordict, next_key(k.observation), "observation")
        init_obs = self._read(tensordict, k.initial_observation, "initial_observation")
        reward = as_column(self._read(tensordict, next_key(k.reward), "reward")).to(obs.dtype)
        done = as_column(self._read(tensordict, next_key(k.done), "done")).to(obs.dtype)
        v0, v, v_next = evaluate_state_values(
            self.value_network, self._value_in, self._value_out, init_obs, obs, next_obs
        )
        if self.reward_correction_network is not None:
            delta_r, anchor = self._delta_r(tensordict, reward)
            corrected = reward + delta_r.detach()
        else:
            delta_r = anchor = torch.zeros_like(reward)
            corrected = reward
        advantage = (corrected + self.gamma * (1.0 - done) * v_next - v) / self.alpha
        return {"obs": obs, "reward": reward, "done": done, "v0": v0, "v": v, "v_next": v_next, "delta_r": delta_r,
                "anchor": anchor, "corrected": corrected, "advantage": advantage}

    def _delta_r(self, tensordict: TensorDictBase, reward: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Δr, its anchor)``: ``anchor + res_scale tanh(net)`` (with its graph); the anchor 0 unless anchored."""
        delta_r = reward_correction(self.reward_correction_network, self._correction_out,
                                    self._network_input(self.reward_correction_network, tensordict), self.res_scale)
        if not self.correction_anchor:
            return delta_r, torch.zeros_like(reward)
        log_ratio = as_column(self._read(tensordict, self.tensor_keys.log_density_ratio, "log_density_ratio"))
        anchor = correction_anchor(self.divergence, log_ratio, reward, self.alpha, self.log_ratio_clip)
        return delta_r + anchor, anchor

    @torch.no_grad()
    def reward_correction_values(self, tensordict: TensorDictBase) -> torch.Tensor:
        """``Δr`` per transition of ``tensordict`` (anchor included; no ``V`` needed), detached."""
        if self.reward_correction_network is None:
            raise ValueError("This RGMLoss has no reward-correction network.")
        reward = as_column(self._read(tensordict, next_key(self.tensor_keys.reward), "reward"))
        return self._delta_r(tensordict, reward.float())[0]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """All terms on one batch: ``loss_value``, ``loss_actor`` (+ ``loss_entropy_coef`` when β is learnt,
        + ``loss_reward_correction`` with a correction network) and detached diagnostics."""
        k = self.tensor_keys
        x = self._lower_level(tensordict)
        advantage = x["advantage"]
        loss_value = (1.0 - self.gamma) * x["v0"].mean() + self.alpha * self.divergence.dual_term(
            advantage, self.advantage_clip
        )
        weight = self.divergence.visitation_weight(advantage.detach(), self.advantage_clip)
        extraction = tensordict.get(k.extraction, None)
        if extraction is not None:  # rows drawn in proportion to w: the same objective, plain BC on them
            loss_actor, loss_entropy_coef = self._actor_losses(extraction, None, noise=tensordict)
        else:
            loss_actor, loss_entropy_coef = self._actor_losses(tensordict, self._bc_weight(weight))
        out = {
            "loss_value": loss_value,
            "loss_actor": loss_actor,
            "entropy_coef": self.log_entropy_coef.detach().exp(),
            "corrected_reward": x["corrected"].mean().detach(),
            "reward_correction": x["delta_r"].mean().detach(),
            "advantage": advantage.mean().detach(),
            "initial_value": x["v0"].mean().detach(),
        }
        if self.learn_entropy_coef:
            out["loss_entropy_coef"] = loss_entropy_coef
        if k.is_expert in tensordict.keys(True):
            is_expert = as_column(tensordict.get(k.is_expert)).to(weight.dtype)
            out["weight_expert"] = (weight * is_expert).sum() / is_expert.sum().clamp(min=1.0)
            out["weight_union"] = (weight * (1 - is_expert)).sum() / (1 - is_expert).sum().clamp(min=1.0)
        if self.reward_correction_network is not None:
            loss, raw_mean = self._correction_objective(tensordict, x)
            out.update(loss_reward_correction=loss, reward_correction_abs=x["delta_r"].abs().mean().detach(),
                       visitation_weight_mean=raw_mean.detach())
        return TensorDict(out, [])

    def _correction_objective(self, tensordict, x) -> tuple[torch.Tensor, torch.Tensor]:
        log_ratio = as_column(self._read(tensordict, self.tensor_keys.log_density_ratio, "log_density_ratio"))
        return reward_correction_objective(
            self.divergence, reward=x["reward"], delta_r=x["delta_r"], done=x["done"], v=x["v"].detach(),
            v_next=x["v_next"].detach(), log_ratio=log_ratio.to(x["obs"].dtype), gamma=self.gamma, alpha=self.alpha,
            advantage_clip=self.advantage_clip, log_ratio_clip=self.log_ratio_clip,
            normalize_weights=self.correction_normalize_weights)

    def value_loss(self, tensordict: TensorDictBase) -> torch.Tensor:
        """``L_V`` alone (``Δr`` detached)."""
        return self(tensordict).get("loss_value")

    def actor_loss(self, tensordict: TensorDictBase) -> torch.Tensor:
        """``L_π`` alone (``w`` detached)."""
        return self(tensordict).get("loss_actor")

    def reward_correction_loss(self, tensordict: TensorDictBase) -> torch.Tensor:
        """``L_Δr`` alone (``V`` detached); needs a correction network."""
        if self.reward_correction_network is None:
            raise ValueError("This RGMLoss has no reward-correction network: pass one to learn Δr.")
        return self._correction_objective(tensordict, self._lower_level(tensordict))[0]

    @torch.no_grad()
    def transition_values(self, tensordict: TensorDictBase) -> TensorDict:
        """Per transition, detached: ``state_value`` ``V(s)``, ``reward_correction`` ``Δr`` (0 without a
        correction network), ``corrected_reward`` ``r~ + Δr`` and ``visitation_weight`` ``w = d^π/d^D``."""
        x = self._lower_level(tensordict)
        weight = self.divergence.visitation_weight(x["advantage"], self.advantage_clip)
        return TensorDict({"state_value": x["v"], "reward_correction": x["delta_r"],
                           "corrected_reward": x["reward"] + x["delta_r"], "visitation_weight": weight},
                          tensordict.batch_size)

    def _bc_weight(self, weight: torch.Tensor) -> torch.Tensor:
        bc_weight = weight if self.weight_clip is None else weight.clamp(max=self.weight_clip)
        if self.normalize_weights:
            bc_weight = bc_weight / bc_weight.mean().clamp(min=1e-8)
        return bc_weight

    def _actor_losses(self, tensordict, bc_weight, noise=None):
        """Weighted BC on ``tensordict`` (``bc_weight`` None: unweighted); the entropy term's noise from ``noise``
        (default: ``tensordict``)."""
        actor_in = self._network_input(self.actor_network, tensordict)
        action = self._read(tensordict, self.tensor_keys.action, "action")
        if not self.stochastic:
            predicted = self.actor_network(actor_in).get(self._actor_out)
            error = (predicted - action).pow(2).sum(-1, keepdim=True)
            return (error if bc_weight is None else bc_weight * error).mean(), None
        dist = self.actor_network.get_dist(actor_in)
        eps = 1e-5
        log_prob = as_column(dist.log_prob(action.clamp(-1 + eps, 1 - eps)))
        loss_actor = -(log_prob if bc_weight is None else bc_weight * log_prob).mean()
        if not self.use_entropy:
            return loss_actor, None
        sample = reparameterised_sample(dist, tensordict if noise is None else noise, self.tensor_keys.actor_noise)
        sample_log_prob = as_column(dist.log_prob(sample))
        loss_actor = loss_actor + self.log_entropy_coef.detach().exp() * sample_log_prob.mean()
        loss_coef = None
        if self.learn_entropy_coef:
            loss_coef = -self.log_entropy_coef * (sample_log_prob.detach().mean() + self.target_entropy)
        return loss_actor, loss_coef
