"""RGM for multi-task data sharing: a target task from other tasks' logs and one expert trajectory.

    python recipes/rgm_datasharing.py                                    # halfcheetah-run-backward from run-forward + jump logs
    python recipes/rgm_datasharing.py env.name=walker2d-run-backward algo=iql_shared
    python recipes/rgm_datasharing.py algo=iql_relabeled                 # the oracle: relabelled with the target's reward
    python recipes/rgm_datasharing.py 'dataset.sources=[halfcheetah-jump/medium]' dataset.unlabelled=[]

The union holds each source dataset with the reward of the task it was collected for, the
target's own logs without reward, and the target's expert trajectory (torchrl_rgm/data/sharing.py).
The configuration is in recipes/config/rgm_datasharing.yaml.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from torchrl_rgm import recipe_support as rs  # noqa: E402
from torchrl_rgm.envs import evaluate  # noqa: E402


@hydra.main(config_path="config", config_name="rgm_datasharing", version_base=None)
def main(cfg: DictConfig) -> dict:
    # 1. Check everything that can be checked before any work, then claim the run directory.
    cfg, run_dir, resuming, device = rs.start_run(cfg)

    # 2. Data: the shared union (source per transition), the target's expert trajectories, mu0.
    data = rs.load_data(cfg)
    print(rs.describe_data(data))

    # 3. Evaluation: returns under the target task's reward, normalised by its random and expert returns.
    def evaluate_returns(policy):
        return evaluate(policy, cfg.env.name, cfg.eval.episodes, cfg.eval.num_envs, cfg.eval.seed)

    # 4. Networks, discriminator, training loop, report (+ per-source reward and visitation weight).
    summary = rs.train(cfg, data, run_dir, resuming, device, evaluate_returns)
    print(rs.format_summary(summary))
    return summary


if __name__ == "__main__":
    main()
