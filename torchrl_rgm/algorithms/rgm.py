"""RGM (Li et al., ICLR 2023): the reward correction Δr (upper level) and the DICE lower level with weighted
BC, on the union with the imperfect reward, weighted by the frozen expert discriminator."""
from __future__ import annotations

import torch

from ..config import resolve_precision
from ..modules import make_actor, make_reward_correction_network, make_value_network
from ..objectives import DIVERGENCES, RGMLoss
from ..diagnostics import transition_diagnostics
from ..train import RGMUpdate
from .base import Algorithm, AlgorithmError, Learner, check_positive, register

__all__ = ["RGM", "PAPER_CORRECTION_LR", "PAPER_UPDATES", "correction_lr", "correction_horizon", "actor_noise_seed"]

#: The authors' Δr schedule: Adam at 3e-7, cosine-annealed over 1e6 updates.
PAPER_CORRECTION_LR, PAPER_UPDATES = 3e-7, 1_000_000
CORRECTION_LR_SCHEDULES = ("rescaled", "paper")
#: How the actor's batch is drawn: ``weighted`` = in proportion to ``w`` over the whole training set (refreshed every
#: ``algo.extraction_refresh`` updates), then plain BC; ``uniform`` = the update's batch, each row weighted by ``w``.
EXTRACTION_SAMPLING = ("weighted", "uniform")


def actor_noise_seed(seed: int) -> int:
    """The seed of a run's actor-noise generator: its own stream, not the batch sampler's (seeded ``seed``)."""
    return (int(seed) * 1_000_003 + 0x5EED) % 2**63


def correction_lr(cfg) -> float:
    """Δr's learning rate: ``algo.correction_lr`` if set; else with ``algo.correction_lr_schedule``
    ``rescaled`` the paper's 3e-7 scaled so that a shorter budget moves Δr as far
    (``3e-7 * 1e6 / budget.updates``), with ``paper`` the paper's 3e-7 itself."""
    if cfg.algo.correction_lr is not None:
        return float(cfg.algo.correction_lr)
    if cfg.algo.get("correction_lr_schedule", "rescaled") == "paper":
        return PAPER_CORRECTION_LR
    return PAPER_CORRECTION_LR * PAPER_UPDATES / cfg.budget.updates


def correction_horizon(cfg) -> int:
    """The updates over which Δr's learning rate is cosine-annealed: the budget, or the paper's 1e6
    with ``algo.correction_lr_schedule=paper`` (a shorter run then ends early on the same schedule)."""
    return PAPER_UPDATES if cfg.algo.get("correction_lr_schedule", "rescaled") == "paper" else cfg.budget.updates


@register
class RGM(Algorithm):
    """Reads the reward, corrects it by Δr bounded by ``res_scale``; ``algo.correction=false`` drops the upper level."""

    name = "rgm"
    uses_discriminator = True
    learns_correction = True  # SMODICE: False
    vectorizable = True

    def validate(self, algo) -> None:
        super().validate(algo)
        if algo.divergence not in DIVERGENCES:
            raise AlgorithmError(f"Unknown divergence {algo.divergence!r}; valid choices are {sorted(DIVERGENCES)}.")
        check_positive(algo, "alpha", "value_lr")
        sampling = algo.get("extraction_sampling", "uniform")
        if sampling not in EXTRACTION_SAMPLING:
            raise AlgorithmError(f"Unknown algo.extraction_sampling {sampling!r}; valid choices are "
                                 f"{list(EXTRACTION_SAMPLING)}.")
        if not isinstance(algo.get("extraction_average", False), bool):
            raise AlgorithmError(f"algo.extraction_average must be true or false, got {algo.extraction_average!r}.")
        refresh = algo.get("extraction_refresh", 1000)
        if isinstance(refresh, bool) or not (isinstance(refresh, int) and refresh > 0):
            raise AlgorithmError(f"algo.extraction_refresh must be a positive number of updates, got {refresh!r}.")
        clip = algo.get("weight_clip", 100.0)
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0):
            raise AlgorithmError(f"algo.weight_clip must be > 0, or null for unclipped weights, got {clip!r}.")
        if not 0 < algo.gamma < 1:
            raise AlgorithmError(f"algo.gamma must lie in (0, 1), got {algo.gamma}.")
        if self.learns_correction:
            if algo.correction_lr is not None and not algo.correction_lr > 0:
                raise AlgorithmError(f"algo.correction_lr must be > 0 or null, got {algo.correction_lr}.")
            if algo.res_scale < 0:
                raise AlgorithmError(f"algo.res_scale must be ≥ 0, got {algo.res_scale}.")
            if algo.get("correction_anchor", False) not in (True, False):
                raise AlgorithmError(f"algo.correction_anchor must be true or false, got {algo.correction_anchor!r}.")
            schedule = algo.get("correction_lr_schedule", "rescaled")
            if schedule not in CORRECTION_LR_SCHEDULES:
                raise AlgorithmError(f"Unknown algo.correction_lr_schedule {schedule!r}; valid choices are "
                                     f"{sorted(CORRECTION_LR_SCHEDULES)}.")

    def build(self, cfg, data, device) -> Learner:
        a, hidden = cfg.algo, tuple(cfg.algo.hidden)
        obs_dim, act_dim = data.obs_dim, data.action_dim
        value = make_value_network(obs_dim, hidden, device=device)
        actor = make_actor(obs_dim, act_dim, stochastic=self.stochastic_actor(cfg), hidden=hidden, device=device)
        learn_correction = self.learns_correction and a.get("correction", True)
        correction = (make_reward_correction_network(obs_dim, act_dim, hidden, device=device,
                                                     zero_init=bool(a.get("correction_zero_init", False)))
                      if learn_correction else None)
        discriminator_loss = self.make_discriminator_loss(cfg, data, device)
        rgm_loss = RGMLoss(value, actor, correction, divergence=a.divergence, alpha=a.alpha, gamma=a.gamma,
                           advantage_clip=a.advantage_clip, res_scale=a.res_scale if learn_correction else 0.0,
                           weight_clip=a.weight_clip, normalize_weights=a.normalize_weights, action_dim=act_dim,
                           correction_normalize_weights=a.get("correction_normalize_weights", True),
                           correction_anchor=bool(a.get("correction_anchor", False)) and learn_correction)
        update = RGMUpdate(
            rgm_loss, value_lr=a.value_lr, value_weight_decay=a.value_weight_decay,
            actor_lr=a.actor_lr, correction_total_steps=correction_horizon(cfg) if correction is not None else None,
            correction_lr=correction_lr(cfg) if correction is not None else 0.0,
            correction_weight_decay=a.get("correction_weight_decay", 0.0), total_steps=cfg.budget.updates,
            compile=self.compile(cfg), compile_mode=cfg.compile_mode, device=device,
            autocast_dtype=torch.bfloat16 if resolve_precision(cfg.precision, device) == "bfloat16" else None,
            noise_seed=actor_noise_seed(cfg.seed))
        networks = {"value": value, "actor": actor, **({"correction": correction} if correction is not None else {}),
                    "discriminator": discriminator_loss.discriminator_network}
        return Learner(actor=actor, update=update, networks=networks, losses={"rgm_loss": rgm_loss},
                       discriminator_loss=discriminator_loss, correction=correction)

    def extraction_refresh(self, cfg) -> int | None:
        if cfg.algo.get("extraction_sampling", "uniform") != "weighted":
            return None
        return int(cfg.algo.get("extraction_refresh", 1000))

    def extraction_weights(self, cfg, learner, union, initial_observation, device):
        """The learnt visitation ratio ``w = d^π/d^D``, clipped at ``weight_clip`` as the actor's loss clips it
        (``null``: unclipped)."""
        w = transition_diagnostics(learner.losses["rgm_loss"], union, initial_observation, device)["visitation_weight"]
        return w if cfg.algo.weight_clip is None else w.clamp(max=cfg.algo.weight_clip)
