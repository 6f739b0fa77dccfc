"""Does the cheap medium-replay construction match what a behaviour learner really collected?

    python benchmarks/replay_construction.py                   # halfcheetah, 50k training steps (~5 min here)

D4RL's medium-replay is the replay buffer of the behaviour learner's training run up to the medium
policy. ``torchrl_rgm.generation.build`` cannot ship that buffer; it rebuilds it from the shipped snapshots
(``replay_plan``: the uniform warm-up, then each snapshot with the training noise for the training steps
nearest to it). This script trains a fresh TD3 learner (``torchrl_rgm.generation.behaviour.train``, snapshots
every 10k steps, the real buffer kept), then builds the same number of transitions from that run's
snapshots both ways — ``training`` proportions (the default) and the earlier ``even`` mix — and compares
each with the real buffer: per-step reward quantiles, mean and spread of the 1000-step return
(normalised with the dataset's reference scores), and the mean per-dimension gap in observation
mean and std (in units of the real buffer's std). Writes ``results/replay_construction.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torchrl_rgm.generation import behaviour  # noqa: E402
from torchrl_rgm.generation.build import reference_scores, replay_plan, rollouts  # noqa: E402
from torchrl_rgm.report import write_json  # noqa: E402


def stats(obs: np.ndarray, rew: np.ndarray, episode_returns: np.ndarray, ref: tuple[float, float]) -> dict:
    score = 100 * (episode_returns - ref[0]) / (ref[1] - ref[0])
    return {"transitions": int(len(rew)), "reward_q10": float(np.quantile(rew, 0.1)),
            "reward_q50": float(np.quantile(rew, 0.5)), "reward_q90": float(np.quantile(rew, 0.9)),
            "reward_mean": float(rew.mean()), "score_mean": float(score.mean()), "score_std": float(score.std()),
            "obs_mean": obs.mean(0), "obs_std": obs.std(0)}


def gap(a: dict, real: dict) -> dict:
    scale = np.maximum(real["obs_std"], 1e-6)
    return {"obs_mean_gap": float(np.mean(np.abs(a["obs_mean"] - real["obs_mean"]) / scale)),
            "obs_std_gap": float(np.mean(np.abs(a["obs_std"] - real["obs_std"]) / scale))}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="halfcheetah", help="an environment whose episodes never terminate early")
    p.add_argument("--steps", type=int, default=50_000, help="training steps (the 'medium' snapshot is the last)")
    p.add_argument("--seed", type=int, default=1, help="the fresh learner's seed (the shipped run used 0)")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "replay_construction.json")
    args = p.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="replay-construction-"))
    start = time.time()
    behaviour.train(args.env, work, args.steps, eval_every=10_000, seed=args.seed, checkpoint_every=args.steps)
    train_s = time.time() - start
    state = torch.load(work / "state.pt", weights_only=True)
    buf = {k: v.numpy() for k, v in state["buffer"].items()}
    # the learner's episodes are consecutive 1000-step blocks (this env never terminates; resets at checkpoints only)
    n_ep = len(buf["rew"]) // 1000
    real_returns = buf["rew"][: n_ep * 1000].reshape(n_ep, 1000).sum(1)

    # the run's snapshots as a policy directory: replay_<k> every 10k steps, the last one as "medium"
    pdir = work / "policies"
    out = pdir / behaviour.policy_dir_name(args.env)
    out.mkdir(parents=True, exist_ok=True)
    snaps = sorted((work / "snapshots").glob("step_*.pt"))
    obs_dim, act_dim = buf["obs"].shape[1], buf["act"].shape[1]
    info = {}
    for k, path in enumerate(snaps):
        meta = torch.load(path, weights_only=True)
        for name in [f"replay_{k}"] + (["medium", "expert"] if k == len(snaps) - 1 else []):
            torch.save({"actor": meta["actor"], "step": meta["step"], "obs_dim": obs_dim, "act_dim": act_dim},
                       out / f"{name}.pt")
            info[name] = {"step": meta["step"], "return": meta["return"]}
    (out / "policies.json").write_text(json.dumps(info, indent=1))
    ref = reference_scores(args.env, 0)

    results = {"real": stats(buf["obs"], buf["rew"].ravel(), real_returns, ref)}
    for proportions in ("training", "even"):
        sources, _ = replay_plan(args.env, 0.1, proportions, policy_dir=pdir)
        episodes = rollouts(args.env, sources, len(buf["rew"]), 7, f"{proportions} construction")
        obs = np.concatenate([np.asarray(e.observations[:-1]) for e in episodes])
        rew = np.concatenate([np.asarray(e.rewards) for e in episodes])
        returns = np.array([sum(e.rewards) for e in episodes if len(e.rewards) == 1000])
        results[proportions] = stats(obs, rew, returns, ref)
    for name in ("training", "even"):
        results[name].update(gap(results[name], results["real"]))
    for r in results.values():
        r.pop("obs_mean"), r.pop("obs_std")
    payload = {"env": args.env, "training_steps": args.steps, "seed": args.seed, "train_s": train_s,
               "snapshot_steps": [info[f"replay_{k}"]["step"] for k in range(len(snaps))], "results": results}
    write_json(payload, args.json)
    cols = ["transitions", "reward_q10", "reward_q50", "reward_q90", "reward_mean", "score_mean", "score_std",
            "obs_mean_gap", "obs_std_gap"]
    lines = [f"{args.env}: a fresh TD3 learner's first {args.steps} steps (seed {args.seed}) against the two "
             "constructions from its own snapshots every 10k steps", "",
             "| buffer | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join("–" if c not in r else (f"{r[c]}" if c == "transitions"
                                                                      else f"{r[c]:.3f}") for c in cols) + " |")
    text = "\n".join(lines) + "\n"
    args.json.with_suffix(".md").write_text(text)
    print(text)
    return payload


if __name__ == "__main__":
    main()
