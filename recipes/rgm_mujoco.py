"""RGM on MuJoCo locomotion with an imperfect reward: data, networks, discriminator, the training loop, report.

    python recipes/rgm_mujoco.py                                  # hopper, medium-replay, negated reward
    python recipes/rgm_mujoco.py env=walker2d reward=partial seed=3 logger=wandb
    python recipes/rgm_mujoco.py algo=iql                         # any registered algorithm, same loop
    python recipes/rgm_mujoco.py resume=outputs/<run>             # continue a run exactly

The configuration is in recipes/config/ (every field says what it does and the paper's value).
recipes/rgm_robomimic.py and recipes/rgm_datasharing.py run this same loop on their own data sources.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from torchrl_rgm import run  # noqa: E402
from torchrl_rgm.algorithms import get_algorithm  # noqa: E402
from torchrl_rgm.config import ConfigError  # noqa: E402
from torchrl_rgm.data import DatasetNotFoundError  # noqa: E402
from torchrl_rgm.data.pipeline import DatasetError  # noqa: E402
from torchrl_rgm.data.robomimic import RobomimicFileError  # noqa: E402
from torchrl_rgm.data.sharing import SharingError  # noqa: E402
from torchrl_rgm.envs import make_policy_fn  # noqa: E402
from torchrl_rgm.report import evaluation_record, format_summary, report  # noqa: E402
from torchrl_rgm.sources import make_source  # noqa: E402
from torchrl_rgm.sampling import UnionReplayBuffer  # noqa: E402


def train(cfg: DictConfig) -> dict:
    # 1. Check everything that can be checked before any work, then claim (or reopen) the run directory.
    cfg, run_dir, resuming, device = run.start_run(cfg)
    source, algorithm = make_source(cfg), get_algorithm(cfg.algo.name)

    # 2. Data: D (union, with is_expert), D^E, mu0, statistics; local datasets are built if missing.
    data = source.load()
    print(source.describe(data))
    run.check_data(cfg, data)

    # 3. Networks, losses and the update step of the algorithm (RGM: V, actor, Δr, discriminator).
    learner = algorithm.build(cfg, data, device)
    checkpoint = run_dir / run.CHECKPOINT_NAME
    state = run.restore_progress(checkpoint, learner, cfg.budget.updates) if resuming else None
    if state is not None and state["step"] >= cfg.budget.updates and (run_dir / "summary.json").exists():
        print(f"{run_dir} finished its {cfg.budget.updates} updates; its summary stands (pass budget.updates=<more> "
              "with resume= to train it longer).")
        return json.loads((run_dir / "summary.json").read_text())

    # 4. The discriminator (expert vs union) is pre-trained once, frozen, and its log d^E/d^D stored per
    #    transition of the union the update samples from.
    if state is None:
        algorithm.pretrain(cfg, learner, data, torch.Generator().manual_seed(cfg.seed), device)
    union = algorithm.prepare_union(cfg, learner, data.union.to_tensordict(), device)
    buffer = UnionReplayBuffer(union, data.initial_observation, cfg.algo.batch_size, seed=cfg.seed, device=device)

    # 5. The loop: one (compiled) update per step; evaluation, logging and an atomic checkpoint every N steps.
    logger = run.make_logger(cfg, run_dir)
    policy = make_policy_fn(learner.actor, data.normalize_observation, device)
    step, history = 0, []
    if state is not None:
        buffer.load_sampling_state(state["sampler"])
        step, history = state["step"], state["history"]
        torch.set_rng_state(state["torch_rng"])
        run.trim_logs(run_dir, step)  # the evaluations after this checkpoint are made again
    start, start_step, eval_time = time.time(), step, 0.0
    bar = tqdm(total=cfg.budget.updates, initial=step, desc=cfg.algo.name.upper(), mininterval=2)
    with run.StopOnInterrupt() as interrupt:  # Ctrl-C: stop between two updates, say how to resume
        while step < cfg.budget.updates and not interrupt.requested:
            metrics = learner.update(buffer.sample())
            step += 1
            bar.update(1)
            if step % cfg.eval.every == 0 or step == cfg.budget.updates:
                t_eval = time.time()
                returns = source.evaluate(policy, data)
                history.append(evaluation_record(step, returns, data, learner.update.metrics_to_floats(metrics)))
                if source.success_rate:
                    history[-1]["success_rate"] = float((returns > 0).mean())
                run.log_metrics(logger, history[-1], step)
                bar.set_postfix(score=f"{history[-1]['normalized_score']:.1f}")
                eval_time += time.time() - t_eval
            if step % cfg.checkpoint_every == 0 or step == cfg.budget.updates:
                run.save_progress(checkpoint, learner, buffer, step, history, cfg.budget.updates)
    if interrupt.requested:
        bar.close()
        saved = torch.load(checkpoint, weights_only=True)["step"] if checkpoint.exists() else 0
        sys.exit(f"interrupted at update {step}; continue from the last checkpoint (update {saved}) with:\n"
                 f"    python {sys.argv[0]} resume={run_dir}")
    bar.close()
    elapsed = time.time() - start

    # 6. Report: summary.json (scores, diagnostics), learning curve, reward correction, final policy.
    summary = report(cfg, source, data, algorithm, learner, union, history, elapsed,
                     (step - start_step) / max(elapsed - eval_time, 1e-9), run_dir, device)
    print(format_summary(summary))
    return summary


def train_or_exit(cfg: DictConfig) -> dict:
    """:func:`train`, with a bad configuration or dataset reported as one line (and exit status 1), not a traceback."""
    try:
        return train(cfg)
    except (ConfigError, DatasetError, DatasetNotFoundError, SharingError, RobomimicFileError) as err:
        sys.exit(f"error: {err}")


@hydra.main(config_path="config", config_name="rgm_mujoco", version_base=None)
def main(cfg: DictConfig) -> dict:
    return train_or_exit(cfg)


if __name__ == "__main__":
    try:
        run.check_group_overrides(sys.argv[1:], Path(__file__).parent / "config")
    except ConfigError as err:
        sys.exit(f"error: {err}")
    main()
