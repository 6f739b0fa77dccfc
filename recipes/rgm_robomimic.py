"""RGM on robomimic manipulation (Lift, Can) with the sparse success reward: mixed-quality data + a few demos.

    python recipes/rgm_robomimic.py                                # lift: mg union, 10 ph demos, sparse reward
    python recipes/rgm_robomimic.py algo=iql seed=1                # a baseline on the same data and budget
    python recipes/rgm_robomimic.py env=can dataset.union_path=/data/can/mg/low_dim_sparse_v141.hdf5

Needs the ``robomimic`` extra (robosuite for the evaluation env; the data are generated with it
when absent). The score is the success rate (%) over ``eval.episodes`` episodes of ``env.horizon`` steps.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from torchrl_rgm import recipe_support as rs  # noqa: E402
from torchrl_rgm.data.robomimic import RobomimicEnv  # noqa: E402
from torchrl_rgm.envs import evaluate  # noqa: E402


@hydra.main(config_path="config", config_name="rgm_robomimic", version_base=None)
def main(cfg: DictConfig) -> dict:
    # 1. Check everything that can be checked before any work, then claim the run directory.
    cfg, run_dir, resuming, device = rs.start_run(cfg)

    # 2. Data: the robomimic files (generated if missing) → D (with is_expert), D^E, mu0, statistics.
    data = rs.load_data(cfg)
    print(rs.describe_data(data))

    # 3. Evaluation: robosuite made from the union file's env metadata; return 1 on success, else 0.
    env_meta, obs_keys = data.info["env_meta"], data.info["obs_keys"]

    def evaluate_returns(policy):
        return evaluate(policy, lambda: RobomimicEnv(env_meta, obs_keys, cfg.env.horizon), cfg.eval.episodes,
                        cfg.eval.num_envs, cfg.eval.seed)

    # 4. Discriminator, bilevel loop (or a baseline's update), evaluations, checkpoints, report.
    summary = rs.train(cfg, data, run_dir, resuming, device, evaluate_returns)
    print(rs.format_summary(summary))
    return summary


if __name__ == "__main__":
    main()
