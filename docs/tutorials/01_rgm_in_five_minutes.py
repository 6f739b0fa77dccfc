"""
RGM in five minutes
===================

Hopper's reward, **negated**: every transition's reward is multiplied by −1. An offline RL method that
trusts this reward learns to fall over as fast as it can. RGM is given one expert trajectory besides
the data; from it, it learns a correction :math:`\\Delta r` of the reward and a policy that makes the
most of the corrected reward.

We run the library's recipe, ``recipes/rgm_mujoco.py``, from Python with a budget small enough for a
CPU (2,500 updates; the recipe's default is 50,000), and look at what it reports: the score of the
policy over training and the corrected reward against the true one.
"""

# %%
# Data
# ----
# The datasets are Minari datasets rolled out from the behaviour policies shipped with the package
# (``python -m torchrl_rgm.generation.build --env hopper`` builds the full-size ones). For this tutorial we
# build a tenth of the default sizes under their own namespace, ``rgm-tutorial``, so that your
# ``rgm/...`` datasets are never touched: ``medium-replay`` (what a TD3 learner saw on its way to a
# medium policy, 24k transitions at this scale) is the union :math:`D^O`, and one episode of ``expert`` is
# :math:`D^E`. They are built once and reused by the other tutorials.
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from hydra import compose, initialize_config_dir

import torchrl_rgm
from torchrl_rgm.generation.build import build_missing, dataset_id

NAMESPACE, ENV = "rgm-tutorial", "hopper"
build_missing(ENV, ["medium-replay", "expert"], scale=0.1, namespace=NAMESPACE)  # once; a tenth of the default sizes
print("datasets:", [dataset_id(ENV, lv, NAMESPACE) for lv in ("medium-replay", "expert")])

# %%
# The recipe's configuration
# --------------------------
# The recipe is a Hydra application; its configuration lives in ``recipes/config`` and every field
# says what it does and the paper's value. On the command line the same run is
# ``python recipes/rgm_mujoco.py dataset.namespace=rgm-tutorial budget.updates=2500 ...``.
RECIPES = Path(torchrl_rgm.__file__).resolve().parents[1] / "recipes"
run_dir = Path(tempfile.mkdtemp(prefix="rgm-tutorial-")) / "hopper-negated"
with initialize_config_dir(config_dir=str(RECIPES / "config"), version_base=None):
    cfg = compose("rgm_mujoco", overrides=[
        f"dataset.namespace={NAMESPACE}",
        "reward=negated",          # the default; reward=true_reward, partial, zero, sparse, ... also exist
        "budget.updates=2500",
        "budget.discriminator_steps=500",
        "eval.every=500",
        "eval.episodes=5",
        "compile=false",           # torch.compile pays off on long runs, not on 2,500 updates
        f"run_dir={run_dir}",
    ])
print(f"env {cfg.env.name} · union {cfg.dataset.union} · reward {cfg.reward.name} · "
      f"{cfg.dataset.n_expert_trajectories} expert trajectory · divergence {cfg.algo.divergence} · "
      f"alpha {cfg.algo.alpha} · |Δr| ≤ {cfg.algo.res_scale}")

# %%
# Train
# -----
# This is the recipe itself: ``train`` in ``recipes/rgm_mujoco.py``, which ``python recipes/rgm_mujoco.py``
# calls with the command line's configuration. Read it top to bottom: check the configuration and claim
# the run directory, load the union :math:`D = D^O \cup D^E`, build the algorithm's networks and update,
# pre-train the discriminator and freeze it, then alternate the upper level (:math:`\Delta r`) and the
# lower level (value and actor) in one update per batch, evaluating the policy every 500 updates on
# gymnasium's ``Hopper-v5``.
sys.path.insert(0, str(RECIPES))
from rgm_mujoco import train  # noqa: E402

summary = train(cfg)

# %%
# The scores are normalised the D4RL way: 0 is the uniform random policy, 100 the expert. The union's
# own episodes score about 5. The same lower level *without* the correction, trusting the negated
# reward, ends below even that (:doc:`04_reading_the_diagnostics` trains it side by side).
#
# What the run wrote
# ------------------
# The run directory holds the configuration, the logs (CSV here; TensorBoard or W&B with
# ``logger=tensorboard`` / ``logger=wandb``), ``summary.json``, a checkpoint that resumes exactly
# (``resume=<run_dir>``), the final policy and two figures.
print(sorted(p.name for p in run_dir.iterdir()))


def show(png: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.imshow(plt.imread(png))
    ax.set_axis_off()
    fig.tight_layout()


# %%
# The learning curve: the policy's normalised score at each evaluation, with the union's and the
# expert data's scores as reference lines.
show(run_dir / "learning_curve.png")

# %%
# The corrected reward against the true one, on 5,000 transitions of the union. The reward the
# learner was given is exactly the negation of the true reward (rank correlation −1); after
# correction, :math:`\tilde r + \Delta r` ranks transitions in the true reward's order far more
# often than not. :math:`\Delta r` is bounded by ``res_scale`` (3 standard deviations of the
# reward), so it cannot reproduce the true reward: it only has to make the expert's visitation the
# best one under the corrected reward.
show(run_dir / "reward_correction.png")
print(f"rank correlation with the true reward: given {summary['spearman_seen_vs_true']:+.2f}, "
      f"corrected {summary['spearman_corrected_vs_true']:+.2f}")

# %%
# Next: :doc:`02_losses_in_your_trainer` writes this loop by hand with the three losses, and
# :doc:`04_reading_the_diagnostics` shows what a failing run looks like.
