"""
Reading the diagnostics
=======================

A score says *whether* offline RL worked; it does not say *why*, and on a real problem you may have no
simulator to compute one. RGM's own quantities tell you much more, from the data alone:

* the **expert/union weight ratio** — the mean visitation weight :math:`w = d^\\pi/d^D` on the expert's
  transitions over the mean on the others: above 1, the learned policy's visitation leans towards the
  expert's;
* the **corrected reward against the true one**, where you know the true one (a benchmark), and
  where :math:`w` puts its mass;
* the **discriminator's** separation of expert and union transitions, which everything else builds on.

We train twice on the hopper data of :doc:`01_rgm_in_five_minutes` with the reward negated: RGM, and
the same lower level *without* the correction — it trusts the negated reward, which is what failure
looks like.
"""

# %%
# Two short runs
# --------------
# ``algo.correction=false`` removes the upper level: the lower level then optimises the reward it is
# given, like any offline RL method that trusts the data.
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from hydra import compose, initialize_config_dir
from scipy.stats import spearmanr

import torchrl_rgm
from torchrl_rgm.algorithms import get_algorithm
from torchrl_rgm.generation.build import build_missing
from torchrl_rgm.diagnostics import transition_diagnostics
from torchrl_rgm.sources import make_source
from torchrl_rgm.train import load_checkpoint

NAMESPACE, ENV = "rgm-tutorial", "hopper"
build_missing(ENV, ["medium-replay", "expert"], scale=0.1, namespace=NAMESPACE)  # once; a tenth of the default sizes

RECIPES = Path(torchrl_rgm.__file__).resolve().parents[1] / "recipes"
sys.path.insert(0, str(RECIPES))
from rgm_mujoco import train  # noqa: E402  (the recipe's own function)

root = Path(tempfile.mkdtemp(prefix="rgm-diagnostics-"))
runs = {}
for name, extra in (("RGM", []), ("no correction", ["algo.correction=false"])):
    with initialize_config_dir(config_dir=str(RECIPES / "config"), version_base=None):
        cfg = compose("rgm_mujoco", overrides=[
            f"dataset.namespace={NAMESPACE}", "reward=negated", "budget.updates=1500",
            "budget.discriminator_steps=500", "eval.every=300", "eval.episodes=5", "compile=false",
            f"run_dir={root / name.replace(' ', '-')}", *extra])
    summary = train(cfg)
    runs[name] = {"cfg": cfg, "data": make_source(cfg).load(), "summary": summary, "run_dir": Path(summary["run_dir"])}
    print(f"{name:14s} final normalised score {summary['final_normalized_score']:5.1f}  "
          f"(union data {summary['union_normalized_score']:.1f}, expert {summary['expert_normalized_score']:.1f})")

# %%
# The expert/union weight ratio
# -----------------------------
# Every evaluation stores the batch means of :math:`w` on expert and non-expert transitions
# (``weight_expert``, ``weight_union``; also in the logs, under ``logs/rgm/scalars``). The checkpoint
# keeps this history.
fig, (ax_ratio, ax_score) = plt.subplots(1, 2, figsize=(11, 3.8))
for name, run in runs.items():
    history = load_checkpoint(run["run_dir"] / "checkpoint.pt")["history"]
    steps = [h["step"] for h in history]
    ax_ratio.plot(steps, [h["weight_expert"] / h["weight_union"] for h in history], marker="o", label=name)
    ax_score.plot(steps, [h["normalized_score"] for h in history], marker="o", label=name)
    print(f"{name:14s} expert/union weight ratio at the end: {history[-1]['weight_expert'] / history[-1]['weight_union']:.2f}")
ax_ratio.axhline(1.0, color="grey", lw=0.8, ls="--")
ax_ratio.set(xlabel="update", ylabel="w on expert / w on the rest", yscale="log", title="weight ratio")
ax_score.set(xlabel="update", ylabel="normalised score", title="score (needs a simulator)")
ax_ratio.legend()
fig.tight_layout()

# %%
# With the correction the ratio stays well above 1 from the first evaluation on: the policy's
# visitation is pulled towards the expert's. Without it the ratio is below 1: the lower level does what the negated reward asks and
# moves *away* from the expert. You can read this without a simulator — on robots, say, where every
# evaluation costs.
#
# Per transition: the corrected reward and the weights
# ----------------------------------------------------
# From a run's checkpoint we rebuild its networks and compute, for every transition of the union,
# the corrected reward :math:`\tilde r + \Delta r` and the weight :math:`w`
# (:func:`~torchrl_rgm.diagnostics.transition_diagnostics`). On a benchmark we also know the true
# reward (``reward="true"``).
per_run = {}
for name, run in runs.items():
    cfg, data = run["cfg"], run["data"]
    learner = get_algorithm(cfg.algo.name).build(cfg, data, "cpu")
    learner.load_networks(load_checkpoint(run["run_dir"] / "checkpoint.pt"))
    # The union as the update saw it: with the frozen discriminator's calibrated log d^E/d^D, which the
    # anchored correction reads (the recipe's prepare_union).
    union = get_algorithm(cfg.algo.name).prepare_union(cfg, learner, data.union.to_tensordict(), "cpu",
                                                       expert=data.expert.to_tensordict())
    diag = transition_diagnostics(learner.losses["rgm_loss"], union, data.initial_observation, "cpu")
    real = ~union["absorbing"].reshape(-1)
    true_r = make_source(cfg).load(reward="true").union["next", "reward"].reshape(-1)[real].numpy()
    per_run[name] = {"true": true_r,
                     "seen": union["next", "reward"].reshape(-1)[real].numpy(),
                     "corrected": diag["corrected_reward"].reshape(-1)[real].numpy(),
                     "w": diag["visitation_weight"].reshape(-1)[real].numpy(),
                     "expert": union["is_expert"].reshape(-1)[real].numpy(),
                     "log_ratio": union["log_density_ratio"].reshape(-1)[real].numpy()}
    r = per_run[name]
    print(f"{name:14s} Spearman with the true reward: seen {spearmanr(r['true'], r['seen'])[0]:+.2f}, "
          f"corrected {spearmanr(r['true'], r['corrected'])[0]:+.2f}, w {spearmanr(r['true'], r['w'])[0]:+.2f}")

fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
r = per_run["RGM"]
axes[0].scatter(r["true"][::4], r["seen"][::4], s=3, alpha=0.3, label="given (negated)")
axes[0].scatter(r["true"][::4], r["corrected"][::4], s=3, alpha=0.3, label="corrected")
axes[0].set(xlabel="true reward (z-scored)", ylabel="reward the learner used", title="RGM: reward")
axes[0].legend(markerscale=4)
deciles = np.quantile(per_run["RGM"]["true"], np.linspace(0, 1, 11))
for name, r in per_run.items():
    bins = np.clip(np.digitize(r["true"], deciles[1:-1]), 0, 9)
    axes[1].plot(range(1, 11), [r["w"][bins == b].mean() for b in range(10)], marker="o", label=name)
axes[1].set(xlabel="decile of the true reward", ylabel="mean w", yscale="log", title="where w puts its mass")
axes[1].legend()
r = per_run["RGM"]
axes[2].hist(r["log_ratio"][r["expert"] == 0], bins=50, alpha=0.6, density=True, label="union")
axes[2].hist(r["log_ratio"][r["expert"] == 1], bins=50, alpha=0.6, density=True, label="expert")
axes[2].set(xlabel=r"$\log d^E/d^D$ (calibrated)", title="discriminator")
axes[2].legend()
fig.tight_layout()

# %%
# How to read these:
#
# * **Reward.** The given reward is the true one mirrored; RGM's correction replaces it near
#   :math:`\alpha f'(\rho)` (the *anchor*, from the discriminator's ratio :math:`\rho = d^E/d^D`) plus a learnt
#   departure bounded by ``res_scale``, so that it rises with the true reward over much of the data — not
#   exactly: the anchor knows only how expert-like a transition is, and the departure moves only as much as
#   the expert's visitation needs.
# * **Where w puts its mass.** With the correction, :math:`w` mostly rises with the true reward (its
#   rank correlation with it, printed above, is positive): the policy imitates the better transitions
#   of the union. Without it, :math:`w` is largest on the *worst* transitions — the failure, visible
#   without any evaluation.
# * **Discriminator.** Expert transitions should sit clearly to the right of the union's. If the two
#   histograms overlap, the discriminator has nothing to tell the upper level: train it longer
#   (``budget.discriminator_steps``), or give it more expert data (``dataset.n_expert_trajectories``).
#
# Other signs of trouble, in ``summary.json`` and the logs: ``reward_correction_abs`` stuck at
# ``res_scale`` (every learnt departure saturated — the correction cannot move further, see the
# Design notes' *Decisions worth knowing*), and a ``weight_union`` that collapses towards 0 (the policy
# only clones the expert's few transitions, with the variance that brings).
