"""Task rewards against the environments' own rewards (where they coincide) and against MuJoCo's state."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from torchrl_rgm.data import load_transitions
from torchrl_rgm.generation.tasks import env_id, make_env
from torchrl_rgm.generation.tasks import JUMP_HEIGHT_WEIGHT, TASKS, get_task, task_reward

from .conftest import build_tiny

OWN = sorted(k for k, t in TASKS.items() if t.own_reward)


def _rollout(env, steps=150, seed=0):
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    out = []
    for _ in range(steps):
        obs, reward, term, trunc, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
        out.append((reward, info))
        if term or trunc:
            env.reset(seed=seed + len(out))
    return out


@pytest.mark.parametrize("key", OWN)
def test_task_reward_equals_the_environments_own_reward(key):
    task = get_task(key)
    env = gym.make(env_id(key), **task.env_kwargs)  # the plain environment, no wrapper
    for reward, info in _rollout(env):
        assert task_reward(key, info) == pytest.approx(reward, abs=1e-5)


def test_run_backward_is_run_forward_mirrored():
    info = {"x_velocity": 2.0, "reward_ctrl": -0.3, "reward_survive": 1.0, "z_position": 0.0}
    assert task_reward("halfcheetah-run-forward", info) == pytest.approx(1.7)
    assert task_reward("halfcheetah-run-backward", info) == pytest.approx(-2.3)
    assert task_reward("walker2d-run-backward", info) == pytest.approx(-1.3)


def test_jump_reward_from_mujoco_state():
    """jump = 15 * torso height - |x velocity| + control cost, with the height and velocity read
    from MuJoCo's state (not from the infos the reward function uses)."""
    env = make_env("halfcheetah-jump")
    env.reset(seed=3)
    data, dt = env.unwrapped.data, env.unwrapped.dt
    rng = np.random.default_rng(0)
    for _ in range(100):
        x_before = float(data.qpos[0])
        action = rng.uniform(-1, 1, 6)
        _, reward, _, _, info = env.step(action)
        expected = (JUMP_HEIGHT_WEIGHT * float(data.qpos[1]) - abs((float(data.qpos[0]) - x_before) / dt)
                    - 0.1 * float(np.sum(np.square(action))))
        assert reward == pytest.approx(expected, abs=1e-4)
        assert info["env_reward"] != pytest.approx(reward)  # not the environment's running reward


def test_jump_rewards_height():
    env = make_env("halfcheetah-jump")
    env.reset(seed=0)
    u = env.unwrapped
    rewards = []
    for z in (0.0, 0.5):
        qpos, qvel = u.init_qpos.copy(), u.init_qvel.copy()
        qpos[1] = z
        u.set_state(qpos, qvel)
        rewards.append(task_reward("halfcheetah-jump", {"z_position": float(u.data.qpos[1]), "x_velocity": 0.0,
                                                         "reward_ctrl": 0.0}))
    assert rewards[1] - rewards[0] == pytest.approx(JUMP_HEIGHT_WEIGHT * 0.5)


def test_task_reward_on_tensors_matches_stored_dataset_rewards():
    """A task dataset's stored reward is its task's reward of its logged infos (torch, batched)."""
    build_tiny("rgm/halfcheetah-jump/tiny-v0", steps=300, env="halfcheetah-jump", max_steps=60)
    td = load_transitions("rgm/halfcheetah-jump/tiny-v0")
    info = td["next", "info"]
    assert "z_position" in info.keys()
    recomputed = task_reward("halfcheetah-jump", {k: info[k] for k in info.keys()})
    torch.testing.assert_close(recomputed, td["next", "reward"].squeeze(-1), atol=1e-4, rtol=1e-5)


def test_unknown_task_is_one_clear_error():
    with pytest.raises(ValueError, match="Unknown task 'halfcheetah-fly'.*halfcheetah-jump"):
        get_task("halfcheetah-fly")
    with pytest.raises(ValueError, match="Unknown env 'halfcheetah-fly'"):
        make_env("halfcheetah-fly")
