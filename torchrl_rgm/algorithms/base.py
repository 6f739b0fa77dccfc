"""What an algorithm is to a recipe: :class:`Algorithm` (what it needs, how it builds its update) and
:class:`Learner` (what it trains), and the registry the recipes choose from by ``algo.name``.

Adding an algorithm is one module in this package that subclasses :class:`Algorithm` and decorates it with
:func:`register`, plus one config file ``recipes/config/algo/<name>.yaml`` (docs: "Adding an algorithm").
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase

from ..modules import make_discriminator
from ..objectives import DiscriminatorLoss
from ..train import fit_ratio_temperature, log_density_ratio, pretrain_discriminator

__all__ = ["Algorithm", "Learner", "AlgorithmError", "register", "get_algorithm", "ALGORITHMS", "check_positive", "expert_start_distribution",
           "INITIAL_STATES"]


class AlgorithmError(ValueError):
    """An unknown algorithm or an invalid field of its configuration (``algo.*``)."""


@dataclass
class Learner:
    """What one run trains: its networks by name (all checkpointed), the update step, the actor it evaluates.

    ``losses`` are the loss modules whose own state is checkpointed (RGM's entropy coefficient);
    ``discriminator_loss`` is set for the algorithms that weight the data by the expert discriminator;
    ``correction`` is RGM's Δr network when it learns one.
    """

    actor: torch.nn.Module
    update: Callable
    networks: dict[str, torch.nn.Module]
    losses: dict[str, torch.nn.Module] = field(default_factory=dict)
    discriminator_loss: DiscriminatorLoss | None = None
    correction: torch.nn.Module | None = None
    info: dict = field(default_factory=dict)  # what preparing the data fitted (e.g. the ratio's temperature)

    def state_dict(self) -> dict:
        """Networks, loss modules and the update's optimiser/schedule states (a checkpoint's training part)."""
        return {"networks": {k: v.state_dict() for k, v in self.networks.items()},
                **{k: v.state_dict() for k, v in self.losses.items()}, "update": self.update.state_dict()}

    def load_networks(self, state: dict) -> None:
        """The networks of :meth:`state_dict` (e.g. a finished run's ``checkpoint.pt``); the discriminator stays frozen.

        A checkpoint of another algorithm (or of a layout before the algorithm registry, where every algorithm
        saved a value network and a discriminator) is refused with the networks that differ, before any is loaded.
        """
        saved, built = set(state["networks"]), set(self.networks)
        if saved != built:
            raise ValueError(f"The checkpoint holds the networks {sorted(saved)} but this algorithm has {sorted(built)}: "
                             "it was written by another algorithm (or an older layout of this one); resume it with the "
                             "configuration and version that wrote it, or start a new run.")
        for k, sd in state["networks"].items():
            self.networks[k].load_state_dict(sd)
        if self.discriminator_loss is not None:
            self.discriminator_loss.discriminator_network.requires_grad_(False)

    def load_state_dict(self, state: dict) -> None:
        self.load_networks(state)
        for k, loss in self.losses.items():
            loss.load_state_dict(state[k])
        self.update.load_state_dict(state["update"])


class Algorithm:
    """An offline learner the recipes can train. Subclasses set the class attributes and :meth:`build`.

    ``reads_reward``: whether the dataset's reward reaches the learner (one run per dataset suffices when not).
    ``uses_discriminator``: pre-trains the expert discriminator and stores ``log_density_ratio`` in the union.
    ``actor``: the actor it needs (``stochastic``/``deterministic``), or ``None`` to follow ``algo.actor``.
    ``relabels``: the union is relabelled with the target task's reward (data sharing only).
    ``compile_by_default``: what ``compile: auto`` does for it.
    ``vectorizable``: its update is an :class:`~torchrl_rgm.train.RGMUpdate`, so ``seeds=[...]`` can train several
    runs as one :class:`~torchrl_rgm.vectorized.VectorizedRGMUpdate`.
    """

    name: ClassVar[str]
    reads_reward: ClassVar[bool] = True
    uses_discriminator: ClassVar[bool] = False
    actor: ClassVar[str | None] = None
    relabels: ClassVar[bool] = False
    compile_by_default: ClassVar[bool] = True
    vectorizable: ClassVar[bool] = False

    # ---- configuration ------------------------------------------------------------------------------
    def validate(self, algo) -> None:
        """Check ``algo.*`` (the fields this algorithm reads) before any data is loaded."""
        if algo.get("actor", "auto") not in ("auto", "deterministic", "stochastic"):
            raise AlgorithmError(f"Unknown algo.actor {algo.actor!r}; valid choices are "
                                 "['auto', 'deterministic', 'stochastic'].")
        if self.actor and algo.get("actor", "auto") not in ("auto", self.actor):
            raise AlgorithmError(f"algo={self.name} needs a {self.actor} actor; got algo.actor={algo.actor}. "
                                 f"Use algo.actor={self.actor} (or auto).")
        check_positive(algo, "batch_size", "actor_lr")
        if algo.get("initial_states", "union") not in INITIAL_STATES:
            raise AlgorithmError(f"Unknown algo.initial_states {algo.initial_states!r}; valid choices are "
                                 f"{sorted(INITIAL_STATES)}.")
        if self.uses_discriminator:
            check_positive(algo, "discriminator_lr")

    def stochastic_actor(self, cfg) -> bool:
        """The actor it trains: what it needs, else ``algo.actor``, else the environment's choice."""
        kind = self.actor or cfg.algo.get("actor", "auto")
        return bool(cfg.env.stochastic_actor) if kind == "auto" else kind == "stochastic"

    def compile(self, cfg) -> bool:
        return cfg.compile is True or (cfg.compile == "auto" and self.compile_by_default)

    # ---- training -----------------------------------------------------------------------------------
    def build(self, cfg, data, device) -> Learner:
        """Networks, losses and the update step on ``device`` for ``data`` (an :class:`~torchrl_rgm.data.RGMData`)."""
        raise NotImplementedError

    def make_discriminator_loss(self, cfg, data, device) -> DiscriminatorLoss:
        a = cfg.algo
        net = make_discriminator(data.obs_dim, data.action_dim, state_only=a.state_only_discriminator,
                                 hidden=tuple(a.hidden), device=device)
        return DiscriminatorLoss(net, gradient_penalty=a.gradient_penalty)

    def pretrain(self, cfg, learner: Learner, data, generator: torch.Generator, device) -> list[float]:
        """Pre-train and freeze the discriminator (expert vs union); the loss history, empty without one."""
        if learner.discriminator_loss is None:
            return []
        return pretrain_discriminator(learner.discriminator_loss, data.union, data.expert,
                                      steps=cfg.budget.discriminator_steps, batch_size=cfg.algo.batch_size,
                                      lr=cfg.algo.discriminator_lr, generator=generator, device=device)

    def prepare_union(self, cfg, learner: Learner, union: TensorDictBase, device,
                      expert: TensorDictBase | None = None) -> TensorDictBase:
        """The union as the update samples it: with the frozen discriminator's ``log_density_ratio`` if used.

        ``algo.density_ratio_temperature``: the logit's temperature, a number or ``auto`` — fitted by
        :func:`~torchrl_rgm.train.fit_ratio_temperature` on the union and ``expert`` (``D^E``; absorbing
        self-loops left out), stored in ``learner.info["density_ratio_temperature"]``."""
        if learner.discriminator_loss is not None:
            temperature = cfg.algo.get("density_ratio_temperature", 1.0)
            if temperature == "auto":
                if expert is None:
                    raise ValueError("density_ratio_temperature=auto fits the ratio on the expert's data: pass expert=.")
                raw_union = log_density_ratio(learner.discriminator_loss, union, device=device)
                raw_expert = log_density_ratio(learner.discriminator_loss, expert, device=device)
                temperature = fit_ratio_temperature(raw_union[_real_rows(union)], raw_expert[_real_rows(expert)])
            learner.info["density_ratio_temperature"] = float(temperature)
            union.set("log_density_ratio", log_density_ratio(learner.discriminator_loss, union, device=device,
                                                             normalize=cfg.algo.normalize_density_ratio,
                                                             temperature=float(temperature)))
        return union

    def training_set(self, cfg, data, union: TensorDictBase, learner: Learner | None = None) -> TensorDictBase:
        """The rows the update samples from, given the prepared ``union`` (:meth:`prepare_union`): the union itself
        by default; e.g. the expert's transitions alone for ``bc_expert``, or the union with labelled rewards for
        ``seabo_iql``. Diagnostics still read the union. ``learner.info`` takes what the step reports."""
        return union

    def seen_reward(self, data, union: TensorDictBase) -> torch.Tensor:
        """The reward the learner saw per transition of the prepared ``union``, in the data's units."""
        return union.get(("next", "reward")) * data.reward_std + data.reward_mean

    def initial_observation(self, cfg, data) -> torch.Tensor:
        """The states ``s0 ~ mu0`` of the lower level's ``(1 - gamma) E[V(s0)]`` (``algo.initial_states``), as rows
        sampled uniformly.

        ``union``: the union's first observations (the environment's start distribution, as DICE writes it).
        ``expert``: the start distribution under which the expert's empirical visitation ``d^E`` (what the
        discriminator estimates: each of its states once) is exactly a discounted visitation,
        ``mu0 = (d^E - gamma P d^E) / (1 - gamma)``: every real state of ``D^E``, each trajectory's first state
        counted ``1 / (1 - gamma)`` times (:func:`expert_start_distribution`). Then ``w = rho`` satisfies the
        lower level's Bellman flow where the discriminator is exact, so ``V`` has nothing to move it for. From the
        union's starts the flow instead puts ``(1 - gamma)`` of the visitation on ``D``'s first observations,
        whose successors in the data follow the union's actions, not the expert's.
        """
        if cfg.algo.get("initial_states", "union") == "expert":
            return expert_start_distribution(data.expert, float(cfg.algo.gamma))
        return data.initial_observation

    def extraction_refresh(self, cfg) -> int | None:
        """Updates between two computations of the extraction weights over the whole training set, from which the
        actor's batch is then drawn (:meth:`~torchrl_rgm.sampling.UnionReplayBuffer.set_extraction_weights`);
        ``None``: the actor learns on the update's uniform batch."""
        return None

    def extraction_weights(self, cfg, learner: Learner, union: TensorDictBase, initial_observation,
                           device) -> torch.Tensor | None:
        """Per transition of ``union``, the weight policy extraction gives it (``None``: no such weight)."""
        return None


def expert_start_distribution(expert: TensorDictBase, gamma: float) -> torch.Tensor:
    r"""Observations whose uniform distribution is :math:`\mu_0 \propto d^E - \gamma P d^E`: each real state of
    ``expert`` once, and each trajectory's first state (``step == 0``) ``round(1 / (1 - gamma))`` times in all.

    For a trajectory visited uniformly (``d^E(s_t) = 1/T``) the discounted flow
    ``d(s_t) = (1 - gamma) mu0(s_t) + gamma d(s_{t-1})`` is then solved by ``d = d^E``: ``mu0(s_0) = 1 / T`` and
    ``mu0(s_t) = (1 - gamma) / T`` after normalisation, up to the rounding of ``1 / (1 - gamma)``."""
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma must be in (0, 1) for a discounted start distribution, got {gamma}.")
    real = _real_rows(expert)
    obs = expert.get("observation")[real]
    if "step" not in expert.keys():
        raise ValueError("The expert's transitions carry no 'step': their trajectories' first states are unknown, "
                         "so algo.initial_states=expert cannot weight them; use algo.initial_states=union.")
    first = expert.get("step").reshape(-1)[real] == 0
    copies = max(int(round(1.0 / (1.0 - gamma))) - 1, 0)
    return torch.cat([obs, obs[first].repeat_interleave(copies, 0)], 0)


def _real_rows(td: TensorDictBase) -> torch.Tensor:
    """Rows of ``td`` that are not absorbing self-loops."""
    if "absorbing" not in td.keys():
        return torch.ones(td.shape[0], dtype=torch.bool)
    return ~td.get("absorbing").reshape(-1).bool()


#: ``algo.initial_states``: where the lower level's ``s0 ~ mu0`` come from (:meth:`Algorithm.initial_observation`).
INITIAL_STATES = ("union", "expert")

#: Every registered algorithm by name (``algo.name``).
ALGORITHMS: dict[str, Algorithm] = {}


def register(cls: type[Algorithm]) -> type[Algorithm]:
    """Class decorator: make ``cls`` available to the recipes as ``algo=<cls.name>``."""
    if cls.name in ALGORITHMS:
        raise AlgorithmError(f"Two algorithms are named {cls.name!r}.")
    ALGORITHMS[cls.name] = cls()
    return cls


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm ``name``; an unknown one is reported with the valid names."""
    if name not in ALGORITHMS:
        raise AlgorithmError(f"Unknown algorithm {name!r}; valid choices are {sorted(ALGORITHMS)}.")
    return ALGORITHMS[name]


def check_positive(algo, *names: str) -> None:
    """Each ``algo.<name>`` must be a finite number > 0. A field that follows another (``alpha: ${env.alpha}``)
    is reported under the field to set."""
    for name in names:
        value = algo.get(name)
        if value is None or not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            source = _interpolated_from(algo, name)
            where = f"{source} must be > 0, got {value} (algo.{name} follows it)" if source else \
                f"algo.{name} must be > 0, got {value}"
            raise AlgorithmError(where + ".")


def _interpolated_from(algo, name: str) -> str | None:
    """``env.alpha`` when ``algo.<name>`` is ``${env.alpha}``, else ``None``."""
    if not isinstance(algo, DictConfig) or not OmegaConf.is_interpolation(algo, name):
        return None
    raw = OmegaConf.to_container(algo, resolve=False)[name]
    match = re.fullmatch(r"\$\{([\w.]+)\}", str(raw))
    return match.group(1) if match else None
