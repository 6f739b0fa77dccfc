"""
RGM on robomimic files
======================

robomimic's manipulation datasets come as HDF5 files, with a sparse reward: 1 on the step the task
succeeds, 0 everywhere else. With a union of mixed-quality episodes ("mg", machine-generated) and a
few proficient demonstrations ("ph"), the question is which of the union's transitions are worth
imitating — exactly what RGM's visitation weights answer.

robomimic's downloads need the network, so the library writes files in robomimic's layout itself,
driving robosuite's ``Lift`` (a Panda arm lifts a cube) with a scripted controller. Pass a file's path
wherever a dataset id goes; a downloaded ``low_dim_sparse_v141.hdf5`` reads the same way.
"""

# %%
# Generate small files
# --------------------
# ``python -m torchrl_rgm.generation.robomimic_build --task lift`` writes the full-size files (200 ``ph``
# demos, 1,000 ``mg`` episodes, ~15 minutes) under ``~/.torchrl_rgm/robomimic``
# (``$TORCHRL_RGM_ROBOMIMIC_DATA``). Here: 10 demos and 30 mixed episodes in a directory of the
# tutorials' own beside it (``robomimic-tutorial``), generated once.
import sys
import tempfile
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
from hydra import compose, initialize_config_dir

import torchrl_rgm
from torchrl_rgm.algorithms import get_algorithm
from torchrl_rgm.data.robomimic import read_transitions
from torchrl_rgm.generation.robomimic_build import build_task, dataset_path, default_root
from torchrl_rgm.diagnostics import transition_diagnostics
from torchrl_rgm.sources import make_source
from torchrl_rgm.train import load_checkpoint

ROOT = default_root().parent / "robomimic-tutorial"
missing = [d for d in ("ph", "mg") if not dataset_path("lift", d, ROOT).exists()]
if missing:
    build_task("lift", root=ROOT, ph_episodes=10, mg_episodes=30, datasets=missing)
ph, mg = dataset_path("lift", "ph", ROOT), dataset_path("lift", "mg", ROOT)

# %%
# The files are robomimic's layout — ``data/demo_<k>/{obs, next_obs, actions, rewards, dones}``,
# the environment's metadata in ``data.attrs["env_args"]``, and filter keys under ``mask/``:
with h5py.File(mg, "r") as f:
    demo = f["data/demo_0"]
    print("obs keys:", sorted(demo["obs"].keys()))
    print("actions", demo["actions"].shape, "rewards", demo["rewards"].shape)
    print("masks:", {k: len(f[f"mask/{k}"]) for k in f["mask"].keys()})

# %%
# :func:`~torchrl_rgm.data.robomimic.read_transitions` reads the low-dimensional keys (concatenated
# in the order given) into the same transitions TensorDict as a Minari dataset:
td = read_transitions(mg)
success = td["episode_return"] > 0
print(f"{td.shape[0]} transitions, observation {tuple(td['observation'].shape[1:])}, "
      f"{int(td['next', 'reward'].sum())} rewarded steps; "
      f"{success.float().mean():.0%} of the transitions belong to successful episodes")

# %%
# Train
# -----
# The robomimic recipe, ``recipes/rgm_robomimic.py``, with the paper's robomimic settings (χ²
# divergence, :math:`\alpha = 2`, batch 100, deterministic actor) and a budget for a CPU. The score is
# the success rate over the evaluation episodes (400 steps each).
RECIPES = Path(torchrl_rgm.__file__).resolve().parents[1] / "recipes"
with initialize_config_dir(config_dir=str(RECIPES / "config"), version_base=None):
    cfg = compose("rgm_robomimic", overrides=[
        f"dataset.root={ROOT}", "dataset.build_if_missing=false", "dataset.n_expert_trajectories=5",
        "budget.updates=1500", "budget.discriminator_steps=500", "eval.every=1500", "eval.episodes=5",
        "eval.num_envs=5", "compile=false", f"run_dir={Path(tempfile.mkdtemp(prefix='rgm-robomimic-')) / 'lift'}"])
sys.path.insert(0, str(RECIPES))
from rgm_mujoco import train  # noqa: E402  (recipes/rgm_robomimic.py runs this same loop)

summary = train(cfg)
run_dir, data = Path(summary["run_dir"]), make_source(cfg).load()

# %%
# Five evaluation episodes measure a success rate only to within tens of points; the docs' Results page's
# benchmark (full files, 20,000 updates, 50 episodes, 3 seeds) puts RGM at 46% and behaviour cloning
# on the union at 35%. What this small run shows reliably is what RGM learned about the data.
#
# Which transitions RGM imitates
# ------------------------------
# The visitation weight :math:`w` of every transition, from the run's checkpoint, grouped by where
# the transition comes from:
learner = get_algorithm(cfg.algo.name).build(cfg, data, "cpu")
learner.load_networks(load_checkpoint(run_dir / "checkpoint.pt"))
union = data.union.to_tensordict()
diag = transition_diagnostics(learner.losses["rgm_loss"], union, data.initial_observation, "cpu")
w, delta = diag["visitation_weight"].reshape(-1), diag["corrected_reward"].reshape(-1) - union["next", "reward"].reshape(-1)
real = ~union["absorbing"].reshape(-1)
expert = union["is_expert"].reshape(-1)
succeeded = union["episode_return"].reshape(-1) > 0
groups = {"mg, failed episodes": real & ~expert & ~succeeded,
          "mg, successful episodes": real & ~expert & succeeded,
          "ph demonstrations": real & expert}
print(f"{'':26s}{'transitions':>12s}{'mean w':>9s}{'mean Δr':>9s}")
for name, mask in groups.items():
    print(f"{name:26s}{int(mask.sum()):12d}{w[mask].mean():9.2f}{delta[mask].mean():+9.2f}")
fig, (ax_w, ax_r) = plt.subplots(1, 2, figsize=(10, 3.2))
ax_w.barh(list(groups), [float(w[m].mean()) for m in groups.values()], color=["tab:red", "tab:green", "tab:blue"])
ax_w.axvline(1.0, color="grey", lw=0.8, ls="--")
ax_w.set(xlabel="mean visitation weight w", title="what RGM imitates")
ax_r.barh(list(groups), [float(delta[m].mean()) for m in groups.values()], color=["tab:red", "tab:green", "tab:blue"])
ax_r.axvline(0.0, color="grey", lw=0.8)
ax_r.set(xlabel="mean Δr (standardised reward units)", title="how it corrects the sparse reward")
ax_r.set_yticklabels([])
fig.tight_layout()
share = w[groups["mg, successful episodes"] | groups["ph demonstrations"]].sum() / w[real].sum()
print(f"share of the behaviour-cloning weight on successes: {share:.0%} "
      f"(their share of the transitions: {(real & (expert | succeeded)).sum() / real.sum():.0%})")

# %%
# The weights order the data the right way round — failed episodes below successful ones, the
# demonstrations above both — and :math:`\Delta r` lowers the reward of failed episodes' transitions,
# although the sparse reward gave them all 0 until the last step. Behaviour cloning weighted by
# :math:`w` therefore imitates successes more than their share of the data, which is how RGM beats
# plain BC on the union in the full-size benchmark (``python benchmarks/robomimic.py --task lift``).
