"""RGM on MuJoCo locomotion with an imperfect reward: data, discriminator, bilevel training, report.

    python recipes/rgm_mujoco.py                                  # hopper, medium-replay, negated reward
    python recipes/rgm_mujoco.py env=walker2d reward=partial seed=3 logger=wandb
    python recipes/rgm_mujoco.py resume=outputs/<run>             # continue a run exactly

The configuration is in recipes/config/ (every field says what it does and the paper's value).
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from torchrl_rgm import recipe_support as rs  # noqa: E402
from torchrl_rgm.envs import evaluate  # noqa: E402


@hydra.main(config_path="config", config_name="rgm_mujoco", version_base=None)
def main(cfg: DictConfig) -> dict:
    # 1. Check everything that can be checked before any work, then claim the run directory.
    cfg, run_dir, resuming, device = rs.start_run(cfg)

    # 2. Data: D (union, with is_expert), D^E, mu0, statistics. Built locally if missing.
    data = rs.load_data(cfg)
    print(rs.describe_data(data))

    # 3. Evaluation: undiscounted returns on gymnasium's MuJoCo task, D4RL-normalised by the loop.
    def evaluate_returns(policy):
        return evaluate(policy, cfg.env.name, cfg.eval.episodes, cfg.eval.num_envs, cfg.eval.seed)

    # 4. Networks and losses (discriminator, upper level Δr, lower level V + actor; or a baseline's);
    #    discriminator pre-training; the bilevel loop with evaluations and checkpoints; the report.
    summary = rs.train(cfg, data, run_dir, resuming, device, evaluate_returns)
    print(rs.format_summary(summary))
    return summary


if __name__ == "__main__":
    main()
