"""
Bring your own data
===================

Everything in the library reads Minari datasets, so your own data only has to be one. This tutorial
records a dataset of its own from a gymnasium environment, checks that the library reads it
transition for transition as Minari does, corrupts its reward with each of the imperfect-reward
transforms, and trains RGM on it.

The environment is gymnasium's ``MountainCarContinuous-v0``: a car in a valley must build up
momentum to reach the flag on the right hill. The reward is :math:`-0.1\\,a^2` per step and +100 on
reaching the flag, which ends the episode (otherwise it is cut at 999 steps).
"""

# %%
# Record the data
# ---------------
# Two policies of our own: an *expert* that pushes in the direction the car is moving (it pumps
# energy into the swing and reaches the flag in about 100 steps), and a *mixed* one that, for a
# step, replaces the expert's action by a uniform random one with a probability drawn per episode —
# so the union holds episodes of every quality. We step the environment ourselves, keep each episode
# in a :class:`minari.data_collector.EpisodeBuffer` and write them with
# :func:`minari.create_dataset_from_buffers` (``minari.DataCollector`` does the same as an environment
# wrapper, with ``pip install "minari[create]"``). The two datasets are rebuilt on every run (a few
# seconds), under the tutorials' namespace.
import gymnasium as gym
import matplotlib.pyplot as plt
import minari
import numpy as np
import torch
from minari.data_collector import EpisodeBuffer

ENV_ID = "MountainCarContinuous-v0"
UNION_ID, EXPERT_ID = "rgm-tutorial/mountaincar/mixed-v0", "rgm-tutorial/mountaincar/expert-v0"
rng = np.random.default_rng(0)


def expert_action(obs: np.ndarray) -> np.ndarray:
    return np.array([1.0 if obs[1] >= 0 else -1.0], dtype=np.float32)


def mean_return(policy, episodes=10, seed=1000):
    env, returns = gym.make(ENV_ID), []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(policy(obs))
            total, done = total + r, term or trunc
        returns.append(total)
    return float(np.mean(returns))


ref_min = mean_return(lambda obs: rng.uniform(-1, 1, 1).astype(np.float32))   # the uniform policy
ref_max = mean_return(expert_action)                                            # the expert


def record(dataset_id, episodes, p_random):
    if dataset_id in minari.list_local_datasets():
        minari.delete_dataset(dataset_id)
    env, buffers = gym.make(ENV_ID), []
    for k in range(episodes):
        obs, _ = env.reset(seed=k)
        p, done = p_random(), False
        observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
        while not done:
            action = rng.uniform(-1, 1, 1).astype(np.float32) if rng.random() < p else expert_action(obs)
            obs, reward, term, trunc, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terminations.append(term)
            truncations.append(trunc)
            done = term or trunc
        buffers.append(EpisodeBuffer(id=k, seed=k, observations=np.stack(observations), actions=np.stack(actions),
                                     rewards=np.asarray(rewards), terminations=np.asarray(terminations),
                                     truncations=np.asarray(truncations)))
    return minari.create_dataset_from_buffers(
        dataset_id=dataset_id, buffer=buffers, env=ENV_ID, algorithm_name="tutorial policies", author="you",
        ref_min_score=ref_min, ref_max_score=ref_max, description="torchrl_rgm tutorial: MountainCarContinuous-v0")


union_ds = record(UNION_ID, episodes=40, p_random=lambda: rng.uniform(0.3, 1.0))
expert_ds = record(EXPERT_ID, episodes=10, p_random=lambda: 0.0)
print(f"{UNION_ID}: {union_ds.total_episodes} episodes, {union_ds.total_steps} steps; "
      f"{EXPERT_ID}: {expert_ds.total_episodes} episodes, {expert_ds.total_steps} steps")
print(f"reference returns: uniform policy {ref_min:.1f}, expert {ref_max:.1f}")

# %%
# Read it, and check the reader
# -----------------------------
# :func:`~torchrl_rgm.data.load_transitions` turns a Minari dataset into one memory-mapped
# TensorDict of transitions (cached by the dataset's fingerprint). A loader is only trusted after a
# comparison with Minari's own reader, so here is one, episode by episode.
from torchrl_rgm.data import load_transitions

td = load_transitions(UNION_ID)
start = 0
for episode in minari.load_dataset(UNION_ID).iterate_episodes():
    n = len(episode.actions)
    part = td[start:start + n]
    assert np.array_equal(part["observation"].numpy(), episode.observations[:-1])
    assert np.array_equal(part["next", "observation"].numpy(), episode.observations[1:])
    assert np.array_equal(part["action"].numpy(), episode.actions)
    assert np.allclose(part["next", "reward"].numpy().ravel(), episode.rewards)
    assert np.array_equal(part["next", "terminated"].numpy().ravel(), episode.terminations)
    start += n
assert start == td.shape[0]
print(f"{td.shape[0]} transitions, identical to minari.load_dataset's episodes")

# %%
# Imperfect rewards
# -----------------
# Each setting is a TorchRL :class:`~torchrl.envs.Transform` of ``("next", "reward")``; it works on a
# TensorDict of transitions as here, or on a replay buffer at sampling time. Random settings draw
# their numbers from each transition's ``transition_id``, so a transition is corrupted the same way
# in the whole dataset and in any batch.
from torchrl_rgm.data import make_reward_transform

settings = {
    "negated": {},
    "partial": {"p": 0.5, "seed": 0},
    "noisy": {"sigma": 1.0, "seed": 0},
    "zero": {},
    "sparse": {"threshold": 80.0},
}
# Per transition the reward here is either a small control cost or the +100 at the flag, so we look
# at what matters to a learner, the return of each episode under each setting:
episode = td["episode"].reshape(-1)
n_episodes = int(episode.max()) + 1


def episode_returns(reward):
    return torch.zeros(n_episodes, dtype=torch.float64).index_add_(0, episode, reward.double().reshape(-1))


true_returns = episode_returns(td["next", "reward"])
fig, axes = plt.subplots(1, len(settings), figsize=(15, 3))
for ax, (name, kwargs) in zip(axes, settings.items()):
    transform = make_reward_transform(name, **kwargs)
    seen = episode_returns(transform(td[:].to_tensordict())["next", "reward"])
    ax.scatter(true_returns, seen, s=12)
    ax.set_title(f"{transform}", fontsize=9)
    ax.set_xlabel("true episode return")
    if seen.std() > 0:
        print(f"{name:8s} correlation of episode returns with the true ones: {np.corrcoef(true_returns, seen)[0, 1]:+.2f}")
    else:
        print(f"{name:8s} the same return for every episode: no information at all")
axes[0].set_ylabel("return the learner sees")
fig.tight_layout()

# %%
# Train RGM on it
# ---------------
# :func:`~torchrl_rgm.data.load_rgm_data` applies the corruption, adds ``n`` expert episodes to the
# union, z-scores observations and rewards, adds absorbing states for the flag and computes
# :math:`\mu_0`. The rest is the library's machinery: pre-train the discriminator, store
# :math:`\log d^E/d^D`, then :class:`~torchrl_rgm.train.RGMUpdate` on uniform batches.
from torchrl_rgm.data import load_rgm_data
from torchrl_rgm.envs import evaluate, make_policy_fn
from torchrl_rgm.modules import make_actor, make_discriminator, make_reward_correction_network, make_value_network
from torchrl_rgm.objectives import DiscriminatorLoss, RGMLoss
from torchrl_rgm.sampling import UnionReplayBuffer
from torchrl_rgm.train import RGMUpdate, log_density_ratio, pretrain_discriminator

torch.manual_seed(0)
data = load_rgm_data(UNION_ID, EXPERT_ID, n_expert_trajectories=2, reward="partial", reward_kwargs={"p": 0.5, "seed": 0})
union = data.union.to_tensordict()
obs_dim, act_dim = data.obs_dim, data.action_dim

discriminator_loss = DiscriminatorLoss(make_discriminator(obs_dim, act_dim))
pretrain_discriminator(discriminator_loss, union, data.expert, steps=500, generator=torch.Generator().manual_seed(0))
union.set("log_density_ratio", log_density_ratio(discriminator_loss, union, normalize=True))

UPDATES = 1000
value, actor = make_value_network(obs_dim), make_actor(obs_dim, act_dim)
correction = make_reward_correction_network(obs_dim, act_dim)
update = RGMUpdate(RGMLoss(value, actor, correction), correction_lr=3e-7 * 1e6 / UPDATES, total_steps=UPDATES)
buffer = UnionReplayBuffer(union, data.initial_observation, batch_size=512, seed=0)  # a TorchRL replay buffer
for step in range(UPDATES):
    metrics = update(buffer.sample())
print({k: round(v, 3) for k, v in update.metrics_to_floats(metrics).items() if k in ("weight_expert", "weight_union")})

returns = evaluate(make_policy_fn(actor, data.normalize_observation), lambda: gym.make(ENV_ID), episodes=5, seed=100)
print(f"returns {returns.round(1)} → normalised score {data.normalized_score(returns).mean():.1f} "
      "(0 = uniform random policy, 100 = the expert)")

# %%
# Your dataset needs ``observations`` (a flat ``Box``; dict observations go through
# ``load_transitions(..., obs_keys=[...])``), ``actions`` in :math:`[-1, 1]`, ``rewards``,
# ``terminations`` and ``truncations``; ``ref_min_score``/``ref_max_score`` give normalised scores.
# The ``other_task`` reward reads per-step infos (``DataCollector(..., record_infos=True)``).
# A dataset on Minari's hub loads the same way by its id when there is network.
