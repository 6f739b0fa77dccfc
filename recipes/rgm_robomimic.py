"""RGM on robomimic manipulation (Lift, Can) with the sparse success reward: mixed-quality data + a few demos.

    python recipes/rgm_robomimic.py                                # lift: mg union, 10 ph demos, sparse reward
    python recipes/rgm_robomimic.py algo=iql seed=1                # a baseline on the same data and budget
    python recipes/rgm_robomimic.py env=can dataset.union_path=/data/can/mg/low_dim_sparse_v141.hdf5

Needs the ``robomimic`` extra (robosuite for the evaluation env; the data are generated with it
when absent). The score is the success rate (%) over ``eval.episodes`` episodes of ``env.horizon`` steps.
The training loop is recipes/rgm_mujoco.py's; only the data source differs (``domain: robomimic`` in
recipes/config/rgm_robomimic.yaml selects :class:`torchrl_rgm.sources.RobomimicSource`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the loop lives in rgm_mujoco.py beside this file

from rgm_mujoco import train_or_exit  # noqa: E402

from torchrl_rgm import run  # noqa: E402
from torchrl_rgm.config import ConfigError  # noqa: E402


@hydra.main(config_path="config", config_name="rgm_robomimic", version_base=None)
def main(cfg: DictConfig) -> dict:
    return train_or_exit(cfg)


if __name__ == "__main__":
    try:
        run.check_group_overrides(sys.argv[1:], Path(__file__).parent / "config", "rgm_robomimic")
    except ConfigError as err:
        sys.exit(f"error: {err}")
    main()
