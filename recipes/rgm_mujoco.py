"""RGM on MuJoCo locomotion with an imperfect reward: data, discriminator, bilevel training, report.

    python recipes/rgm_mujoco.py                                  # hopper, medium-replay, negated reward
    python recipes/rgm_mujoco.py env=walker2d reward=partial seed=3 logger=wandb
    python recipes/rgm_mujoco.py resume=outputs/<run>             # continue a run exactly

The configuration is in recipes/config/ (every field says what it does and the paper's value).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from torchrl_rgm import recipe_support as rs  # noqa: E402
from torchrl_rgm.envs import evaluate, make_policy_fn  # noqa: E402
from torchrl_rgm.train import TransitionSampler, load_checkpoint, log_density_ratio, save_checkpoint  # noqa: E402


@hydra.main(config_path="config", config_name="rgm_mujoco", version_base=None)
def main(cfg: DictConfig) -> dict:
    # 1. Check everything that can be checked before any work, then claim the run directory.
    rs.validate(cfg)
    run_dir, resuming = rs.prepare_run_dir(cfg)
    cfg = rs.load_resumed_config(run_dir) if resuming else cfg
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    rs.save_config(cfg, run_dir)

    # 2. Data: D (union, with is_expert), D^E, mu0, statistics. Built locally if missing.
    data = rs.load_data(cfg)
    print(rs.describe_data(data))

    # 3. Networks and losses (discriminator, upper level Δr, lower level V + actor; or a baseline's).
    nets = rs.build_networks(cfg, data, device)
    update = rs.build_update(cfg, nets, device, data)
    ckpt_path = run_dir / "checkpoint.pt"

    # 4. Discriminator: pre-train, freeze, compute log d^E/d^D once per union transition.
    union = data.union.to_tensordict()
    if resuming:
        state = load_checkpoint(ckpt_path)
        rs.load_state(state, nets, update)
    else:
        generator = torch.Generator().manual_seed(cfg.seed)
        rs.pretrain_discriminator(cfg, nets, data, generator, device)
        state = None
    if cfg.algo.name in rs.USES_DISCRIMINATOR:  # bc, iql, td3bc never read it
        union.set("log_density_ratio", log_density_ratio(nets.discriminator_loss, union, device=device,
                                                             normalize=cfg.algo.normalize_density_ratio))
    if cfg.algo.name == "smodice":  # SMODICE's reward is the discriminator's log-ratio, not the dataset's
        union.set(("next", "reward"), union.get("log_density_ratio").clone())
    sampler = TransitionSampler(union, data.initial_observation, cfg.algo.batch_size, seed=cfg.seed, device=device)

    # 5. The bilevel loop: one compiled update per step, evaluation every N steps.
    logger = rs.make_logger(cfg, run_dir)
    policy = make_policy_fn(nets.actor, lambda o: data.normalize_observation(o), device)
    step, history = 0, []
    if state is not None:
        sampler.load_state_dict(state["sampler"])
        step, history = state["step"], state["history"]
        torch.set_rng_state(state["torch_rng"])
    start, start_step, eval_time = time.time(), step, 0.0
    bar = tqdm(total=cfg.budget.updates, initial=step, desc=cfg.algo.name.upper(), mininterval=2)
    while step < cfg.budget.updates:
        metrics = update(sampler.sample())
        step += 1
        bar.update(1)
        if step % cfg.eval.every == 0 or step == cfg.budget.updates:
            t_eval = time.time()
            returns = evaluate(policy, cfg.env.name, cfg.eval.episodes, cfg.eval.num_envs, cfg.eval.seed)
            scores = data.normalized_score(returns)
            last = {"step": step, "return": float(returns.mean()), "normalized_score": float(scores.mean()),
                    "normalized_score_std": float(scores.std()), **update.metrics_to_floats(metrics)}
            history.append(last)
            rs.log_metrics(logger, last, step)
            bar.set_postfix(score=f"{last['normalized_score']:.1f}")
            eval_time += time.time() - t_eval
        if step % cfg.checkpoint_every == 0 or step == cfg.budget.updates:
            save_checkpoint(rs.collect_state(nets, update, sampler, step, history), ckpt_path)
    bar.close()
    elapsed = time.time() - start

    # 6. Report: summary.json, learning curve, reward correction, final policy.
    summary = rs.report(cfg, data, nets, history, elapsed, (step - start_step) / max(elapsed - eval_time, 1e-9),
                        run_dir, device)
    print(rs.format_summary(summary))
    return summary


if __name__ == "__main__":
    main()
