"""RGM for multi-task data sharing: a target task from other tasks' logs and one expert trajectory.

    python recipes/rgm_datasharing.py                                    # halfcheetah-run-backward from run-forward + jump logs
    python recipes/rgm_datasharing.py env.name=walker2d-run-backward algo=iql_shared
    python recipes/rgm_datasharing.py algo=iql_relabeled                 # the oracle: relabelled with the target's reward
    python recipes/rgm_datasharing.py 'dataset.sources=[halfcheetah-jump/medium]' dataset.unlabelled=[]

The union holds each source dataset with the reward of the task it was collected for, the
target's own logs without reward, and the target's expert trajectory (torchrl_rgm/data/sharing.py).
The training loop is recipes/rgm_mujoco.py's; only the data source differs (``domain: datasharing`` in
recipes/config/rgm_datasharing.yaml selects :class:`torchrl_rgm.sources.SharingSource`).
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


@hydra.main(config_path="config", config_name="rgm_datasharing", version_base=None)
def main(cfg: DictConfig) -> dict:
    return train_or_exit(cfg)


if __name__ == "__main__":
    try:
        run.check_group_overrides(sys.argv[1:], Path(__file__).parent / "config", "rgm_datasharing")
    except ConfigError as err:
        sys.exit(f"error: {err}")
    main()
