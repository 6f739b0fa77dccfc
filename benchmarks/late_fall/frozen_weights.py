"""Exploratory (docs/results.md, "Where the late fall comes from"): the default RGM run with its actor's rows drawn
from a distribution that does not move, while the lower and upper levels train as usual. MODE=rho: w = the
calibrated rho at every refresh; MODE=first: the first refresh's w kept for the rest of the run.
    MODE=rho python benchmarks/late_fall/frozen_weights.py <recipe overrides>   (prints the run's summary)"""
import os
import sys
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "recipes"), str(ROOT)]
import torch
from hydra import compose, initialize_config_dir
import rgm_mujoco
from torchrl_rgm.algorithms.rgm import RGM

mode = os.environ.get("MODE", "rho")
original = RGM.extraction_weights
frozen = {}


def extraction_weights(self, cfg, learner, union, initial_observation, device):
    if mode == "rho":
        return union.get("log_density_ratio").reshape(-1).float().exp().to(device)
    if "w" not in frozen:
        frozen["w"] = original(self, cfg, learner, union, initial_observation, device)
    return frozen["w"]


RGM.extraction_weights = extraction_weights
with initialize_config_dir(config_dir=str(ROOT / "recipes" / "config"), version_base=None):
    cfg = compose("rgm_mujoco", overrides=sys.argv[1:])
print({k: v for k, v in rgm_mujoco.train(cfg).items() if "score" in k or k == "history"})
