"""Train the behaviour policies that generate the offline datasets (TD3 with TorchRL's ``TD3Loss``).

    python -m torchrl_rgm.generation.behaviour --env hopper            # train (resumes if interrupted)
    python -m torchrl_rgm.generation.behaviour --env hopper --export   # pick expert/medium/replay snapshots
    python -m torchrl_rgm.generation.behaviour --env halfcheetah-jump  # a task of a family (data/tasks.py)

Training keeps its full state (networks, optimisers, replay buffer, RNG, step) in
``--workdir`` and resumes from it. Every ``--eval-every`` steps the deterministic policy is
evaluated on 10 episodes and its actor saved as a snapshot; ``--export`` then writes the
shipped checkpoints into ``torchrl_rgm/generation/policies/<env>/``: ``expert`` (best snapshot),
``medium`` (the first snapshot reaching about a third of the way from the first snapshot's return,
or 0 if higher, to the expert's) and
``replay_<k>`` (snapshots on the way to medium, medium included, whose returns spread evenly
from the first snapshot's to medium's; rolled out with their exploration noise to make
``medium-replay``).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from tqdm import tqdm

from ..envs import evaluate as evaluate_policy, make_policy_fn
from ..modules import _mlp, make_actor
from ..train import save_checkpoint as atomic_save
from .tasks import TASKS, env_names, make_env

__all__ = ["POLICY_DIR", "DEFAULT_WORKDIR", "BUDGETS", "policy_dir_name", "has_shipped_policies", "TD3",
           "torch_threads", "policy_action", "evaluate", "train", "export", "load_policy", "main"]

#: Where the shipped behaviour policies live (``policies/<env or task>/{expert,medium,replay_<k>}.pt``
#: next to this module).
#:
#: :meta hide-value:
POLICY_DIR = Path(__file__).parent / "policies"
#: Default root of the TD3 ``--workdir`` (``<root>/<env>``), ``$TORCHRL_RGM_CACHE/behaviour``
#: (``~/.cache/torchrl_rgm/behaviour`` when the variable is unset).
#:
#: :meta hide-value:
DEFAULT_WORKDIR = Path(os.environ.get("TORCHRL_RGM_CACHE", Path.home() / ".cache" / "torchrl_rgm")) / "behaviour"

#: Default TD3 step budget (``--steps``) per environment or task, enough to pass the expert targets
#: (250 000 for names not listed).
BUDGETS = {"hopper": 400_000, "walker2d": 500_000, "halfcheetah": 250_000,
           # the data-sharing tasks (run-forward reuses the environments' policies), sized for this machine
           "halfcheetah-run-backward": 120_000, "halfcheetah-jump": 120_000,
           # not shipped: TD3 settled on throwing itself backward here (return 19; docs/results.md, data sharing)
           "walker2d-run-backward": 200_000}


def policy_dir_name(env_name: str) -> str:
    """Where an environment's or a task's policies live (run-forward tasks share their env's)."""
    return TASKS[env_name].policy_name if env_name in TASKS else env_name


def has_shipped_policies(env_name: str, policy_dir: Path = POLICY_DIR) -> bool:
    """Whether the behaviour policies the builder needs (an ``expert`` at least) are shipped."""
    return (policy_dir / policy_dir_name(env_name) / "expert.pt").exists()


class TD3:
    """TD3 (Fujimoto et al., 2018): twin critics, target policy smoothing, delayed actor.

    Written over plain tensors because TorchRL's ``TD3Loss`` cost 13.5 ms per update here
    (its functional/vmap machinery) against ~4 ms for the same maths below, and the three
    behaviour policies need millions of updates on a 2-core machine.
    """

    def __init__(self, obs_dim, act_dim, hidden=(256, 256), lr=3e-4, gamma=0.99, tau=0.005,
                 policy_noise=0.2, noise_clip=0.5, bf16=True):
        self.actor = make_actor(obs_dim, act_dim, hidden=hidden)
        self.critics = torch.nn.ModuleList([_mlp(obs_dim + act_dim, 1, hidden) for _ in range(2)])
        self.actor_target = copy.deepcopy(self.actor.module).requires_grad_(False)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.opt_critic = torch.optim.Adam(self.critics.parameters(), lr=lr)
        self.gamma, self.tau, self.policy_noise, self.noise_clip = gamma, tau, policy_noise, noise_clip
        self.bf16 = bf16

    def update(self, obs, act, rew, next_obs, term, update_actor: bool) -> None:
        # bfloat16 hidden layers (1.45x faster updates here) with float32 output heads (ScalarHead):
        # with bfloat16 heads too, Q-values of a few hundred were rounded to steps of 1-2 and
        # hopper/walker2d stalled at ~330 (steps 50k-100k of the shipped runs).
        with torch.autocast(obs.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            self._update(obs, act, rew, next_obs, term, update_actor)

    def _update(self, obs, act, rew, next_obs, term, update_actor: bool) -> None:
        with torch.no_grad():
            noise = (torch.randn_like(act) * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)
            next_act = (self.actor_target(next_obs) + noise).clamp(-1, 1)
            target_q = torch.min(*(q(next_obs, next_act) for q in self.critics_target))
            target = (rew + self.gamma * (1 - term) * target_q).float()
        critic_loss = sum((q(obs, act).float() - target).pow(2).mean() for q in self.critics)
        self.opt_critic.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.opt_critic.step()
        if update_actor:
            q1 = self.critics[0]
            actor_loss = -q1(obs, self.actor.module(obs)).float().mean()
            self.opt_actor.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.opt_actor.step()
            self.critics.zero_grad(set_to_none=True)
            with torch.no_grad():
                for src, dst in ((self.actor.module, self.actor_target), (self.critics, self.critics_target)):
                    torch._foreach_lerp_(list(dst.parameters()), list(src.parameters()), self.tau)

    def state_dict(self):
        return {
            "actor": self.actor.state_dict(), "critics": self.critics.state_dict(),
            "actor_target": self.actor_target.state_dict(), "critics_target": self.critics_target.state_dict(),
            "opt_actor": self.opt_actor.state_dict(), "opt_critic": self.opt_critic.state_dict(),
        }

    def load_state_dict(self, state):
        self.actor.load_state_dict(state["actor"])
        self.critics.load_state_dict(state["critics"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.critics_target.load_state_dict(state["critics_target"])
        self.opt_actor.load_state_dict(state["opt_actor"])
        self.opt_critic.load_state_dict(state["opt_critic"])


def _plain(actor) -> bool:
    """Whether ``actor`` is one module reading ``observation`` and writing ``action`` (and nothing else)."""
    return (type(actor) is TensorDictModule and list(actor.in_keys) == ["observation"]
            and list(actor.out_keys) == ["action"])


@torch.no_grad()
def policy_action(actor: TensorDictModule, obs: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """The actor's action for one raw observation, plus Gaussian noise of std ``noise``, clipped to ``[-1, 1]``.

    A plain ``observation -> action`` module is called on the tensor itself: the same computation without a
    TensorDict per step, which was half of a dataset build's time (the actions are bit-identical; tested).
    """
    x = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
    if _plain(actor):
        action = actor.module(x).squeeze(0).numpy()
    else:
        action = actor(TensorDict(observation=x, batch_size=[1]))["action"].squeeze(0).numpy()
    if noise > 0:
        action = action + noise * rng.standard_normal(action.shape)
    return np.clip(action, -1.0, 1.0)


def evaluate(actor, env_name: str, episodes: int = 10, seed: int = 10_000) -> list[float]:
    """Deterministic returns of a behaviour policy (raw observations: it was trained on them)."""
    return evaluate_policy(make_policy_fn(actor, lambda obs: obs), env_name, episodes, num_envs=episodes,
                           seed=seed).tolist()


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch threads, then give the caller back the count it had (also on error): a dataset
    built inside a training run must not leave the run on one core."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(env_name: str, workdir: Path, total_steps: int, eval_every: int, seed: int,
          start_steps: int = 10_000, batch_size: int = 256, exploration: float = 0.1,
          checkpoint_every: int = 50_000) -> None:
    """Train a TD3 behaviour policy on ``env_name`` for ``total_steps`` environment steps.

    The first ``start_steps`` actions are uniform, then the actor's with Gaussian noise
    ``exploration``. Every ``eval_every`` steps the deterministic actor is evaluated and saved as
    a snapshot in ``workdir/snapshots`` (returns in ``workdir/log.json``); every
    ``checkpoint_every`` steps the full state (networks, optimisers, replay buffer, RNG) goes to
    ``workdir/state.pt``, from which a later call resumes.
    """
    with torch_threads(1):  # one core each: two environments can train side by side
        _train(env_name, workdir, total_steps, eval_every, seed, start_steps, batch_size, exploration,
               checkpoint_every)


def _train(env_name, workdir, total_steps, eval_every, seed, start_steps, batch_size, exploration,
           checkpoint_every) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    env = make_env(env_name)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    agent = TD3(obs_dim, act_dim)
    buffer = {
        "obs": torch.zeros(total_steps, obs_dim), "act": torch.zeros(total_steps, act_dim),
        "rew": torch.zeros(total_steps, 1), "next_obs": torch.zeros(total_steps, obs_dim),
        "term": torch.zeros(total_steps, 1),
    }
    state_path = workdir / "state.pt"
    step, episode, log = 0, 0, []
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if state_path.exists():
        state = torch.load(state_path, weights_only=True)
        agent.load_state_dict(state["agent"])
        for k, v in state["buffer"].items():
            buffer[k][: len(v)] = v
        step, episode, log = state["step"], state["episode"], json.loads(state["log"])
        rng = np.random.default_rng([seed, step])
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed {env_name} at step {step}")
    obs, _ = env.reset(seed=seed + episode)
    bar = tqdm(total=total_steps, initial=step, desc=f"TD3 {env_name}", mininterval=10)
    while step < total_steps:
        if step < start_steps:
            action = rng.uniform(-1, 1, act_dim)
        else:
            action = policy_action(agent.actor, obs, exploration, rng)
        next_obs, reward, term, trunc, _ = env.step(action)
        for key, value in (("obs", obs), ("act", action), ("rew", reward), ("next_obs", next_obs), ("term", term)):
            buffer[key][step] = torch.as_tensor(np.asarray(value, dtype=np.float32))
        obs = next_obs
        step += 1
        if term or trunc:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
        if step >= start_steps:
            idx = torch.randint(step, (batch_size,))
            agent.update(*(buffer[k][idx] for k in ("obs", "act", "rew", "next_obs", "term")),
                         update_actor=step % 2 == 0)
        if step % eval_every == 0:
            returns = evaluate(agent.actor, env_name)
            log.append({"step": step, "mean": float(np.mean(returns)), "std": float(np.std(returns))})
            atomic_save({"actor": agent.actor.state_dict(), "step": step, "return": log[-1]["mean"]},
                        workdir / "snapshots" / f"step_{step:08d}.pt")
            bar.set_postfix(ret=f"{log[-1]['mean']:.0f}")
            (workdir / "log.json").write_text(json.dumps(log, indent=1))
        if step % checkpoint_every == 0 or step == total_steps:
            atomic_save({
                "agent": agent.state_dict(), "buffer": {k: v[:step].clone() for k, v in buffer.items()},
                "step": step, "episode": episode, "log": json.dumps(log), "torch_rng": torch.get_rng_state(),
            }, state_path)
            rng = np.random.default_rng([seed, step])  # resume restarts from exactly this state
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
        bar.update(1)
    bar.close()


def _replay_snapshots(returns: list[float], n: int) -> list[int]:
    """Indices of ``n`` snapshots whose returns spread evenly from the first to the last one.

    ``returns`` are those of the snapshots up to and including medium. Learning curves have long
    plateaus and sudden jumps: snapshots evenly spaced in *steps* would all sit on the plateau
    and leave the dataset without any behaviour between it and medium, so each of ``n`` return
    levels from the first snapshot's to medium's takes the unused snapshot nearest to it.
    """
    n = min(n, len(returns))
    chosen: list[int] = []
    for level in np.linspace(returns[0], returns[-1], n):
        free = [i for i in range(len(returns)) if i not in chosen]
        chosen.append(min(free, key=lambda i: (abs(returns[i] - level), i)))
    return sorted(chosen)


def export(env_name: str, workdir: Path, out_dir: Path, n_replay: int = 5) -> dict:
    """Pick the ``expert``, ``medium`` and ``replay_<k>`` snapshots of a training run and write them to ``out_dir``.

    ``expert`` is the best snapshot, ``medium`` the first to reach about a third of the way to it,
    and the ``n_replay`` replay snapshots spread evenly in return up to medium (see the module
    docstring). Returns ``{name: {"step", "return"}}``, also written to ``out_dir/policies.json``.
    """
    snapshots = sorted((workdir / "snapshots").glob("step_*.pt"))
    if not snapshots:
        raise FileNotFoundError(f"No snapshots in {workdir / 'snapshots'}: train first.")
    metas = [torch.load(p, weights_only=True) for p in snapshots]
    best = max(range(len(metas)), key=lambda i: metas[i]["return"])
    # a third of the way from the first snapshot (the warm-up's near-random policy) to the expert: with
    # rewards that are negative at rest (halfcheetah-jump) "a third of the expert's return" would be ~expert
    start = min(metas[0]["return"], 0.0)
    target = start + (metas[best]["return"] - start) / 3
    medium = next(i for i in range(best + 1) if metas[i]["return"] >= start + 0.8 * (target - start))
    replay = _replay_snapshots([m["return"] for m in metas[: medium + 1]], n_replay)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = {"expert": best, "medium": medium, **{f"replay_{k}": i for k, i in enumerate(replay)}}
    env = make_env(env_name)
    info = {}
    for name, i in chosen.items():
        meta = metas[i]
        atomic_save({"actor": meta["actor"], "step": meta["step"], "obs_dim": env.observation_space.shape[0],
                     "act_dim": env.action_space.shape[0]}, out_dir / f"{name}.pt")
        info[name] = {"step": meta["step"], "return": meta["return"]}
    (out_dir / "policies.json").write_text(json.dumps(info, indent=1))
    return info


def load_policy(env_name: str, level: str, policy_dir: Path = POLICY_DIR) -> TensorDictModule:
    """A shipped behaviour policy (``expert``, ``medium``, ``replay_<k>``) as a deterministic actor."""
    path = policy_dir / policy_dir_name(env_name) / f"{level}.pt"
    if not path.exists():
        raise FileNotFoundError(
            f"No shipped policy {path}. Available: {sorted(p.stem for p in path.parent.glob('*.pt'))}"
        )
    state = torch.load(path, weights_only=True)
    actor = make_actor(state["obs_dim"], state["act_dim"])
    actor.load_state_dict(state["actor"])
    return actor.eval()


def main(argv=None) -> None:
    """Command line: train the behaviour policies of ``--env``, or with ``--export`` ship their snapshots."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True, choices=env_names())
    parser.add_argument("--steps", type=int, default=None, help="total environment steps (default per env)")
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--export", action="store_true", help="write the shipped checkpoints from the snapshots")
    args = parser.parse_args(argv)
    workdir = args.workdir or DEFAULT_WORKDIR / args.env
    if args.export:
        print(json.dumps(export(args.env, workdir, POLICY_DIR / policy_dir_name(args.env)), indent=1))
        return
    start = time.time()
    train(args.env, workdir, args.steps or BUDGETS.get(args.env, 250_000), args.eval_every, args.seed)
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
