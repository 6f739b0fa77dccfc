"""The data-sharing loader against minari.load_dataset, transition by transition."""
import minari
import numpy as np
import pytest
import torch

from torchrl_rgm.data.sharing import SharingError, default_sources, load_sharing_data, resolve_dataset, source_task
from torchrl_rgm.generation.tasks import task_reward

from .conftest import build_tiny

FWD, JUMP, BWD = "halfcheetah-run-forward", "halfcheetah-jump", "halfcheetah-run-backward"


@pytest.fixture
def family():
    build_tiny(f"rgm/{FWD}/tiny-v0", steps=240, seed=1, env=FWD, max_steps=40)
    build_tiny(f"rgm/{JUMP}/tiny-v0", steps=160, seed=2, env=JUMP, max_steps=40, policy="actor")
    build_tiny(f"rgm/{BWD}/tiny-v0", steps=120, seed=3, env=BWD, max_steps=30)
    build_tiny(f"rgm/{BWD}/expert-v0", steps=150, seed=4, env=BWD, max_steps=50, policy="actor")
    return dict(sources=[f"{FWD}/tiny", f"{JUMP}/tiny"], unlabelled=[f"{BWD}/tiny"])


def _episodes_without_timeouts(ds_id, n=None):
    """(obs, action, reward, infos) per kept transition, straight from Minari's reader."""
    rows = []
    for ep in list(minari.load_dataset(ds_id).iterate_episodes())[:n]:
        T = len(ep.actions)
        for t in range(T):
            if ep.truncations[t] and not ep.terminations[t]:
                continue  # timeouts are dropped by the loader
            info = {k: float(v[t + 1]) for k, v in ep.infos.items()}
            rows.append((ep.observations[t], ep.actions[t], float(ep.rewards[t]), info))
    return rows


def test_union_matches_minari_transition_by_transition(family):
    data = load_sharing_data(BWD, **family, n_expert_trajectories=2)
    union = data.union[~data.union["absorbing"].squeeze(-1)]
    names = data.info["sources"]
    assert names == [f"{FWD}/tiny", f"{JUMP}/tiny", f"{BWD}/tiny (unlabelled)", f"{BWD} expert (2 traj.)"]
    assert data.info["source_tasks"] == [FWD, JUMP, BWD, BWD]
    ids = [f"rgm/{FWD}/tiny-v0", f"rgm/{JUMP}/tiny-v0", f"rgm/{BWD}/tiny-v0", f"rgm/{BWD}/expert-v0"]
    for k, ds_id in enumerate(ids):
        rows = _episodes_without_timeouts(ds_id, n=2 if k == 3 else None)
        part = union[union["source"] == k]
        assert part.shape[0] == len(rows) > 0
        obs = part["observation"][:, :-1] * data.obs_std + data.obs_mean
        reward = part["next", "reward"].squeeze(-1) * data.reward_std + data.reward_mean
        np.testing.assert_allclose(obs.numpy(), np.stack([r[0] for r in rows]), atol=1e-4)
        np.testing.assert_allclose(part["action"].numpy(), np.stack([r[1] for r in rows]), atol=1e-6)
        seen = np.array([r[2] for r in rows])
        target = np.array([-r[3]["x_velocity"] + r[3]["reward_ctrl"] for r in rows])  # run-backward, by hand
        np.testing.assert_allclose(part["next", "target_reward"].squeeze(-1).numpy(), target, atol=1e-4)
        if k == 2:  # unlabelled: reward 0
            np.testing.assert_allclose(reward.numpy(), 0.0, atol=1e-5)
        else:  # each keeps the reward of the task it was collected for
            np.testing.assert_allclose(reward.numpy(), seen, atol=1e-3)
            own = np.array([task_reward(data.info["source_tasks"][k], r[3]) for r in rows])
            np.testing.assert_allclose(seen, own, atol=1e-4)
        assert part["is_expert"].all() == (k == 3)
        firsts = part[part["step"] == 0]
        episodes = list(minari.load_dataset(ds_id).iterate_episodes())
        by_hand = [sum(-x + c for x, c in zip(ep.infos["x_velocity"][1:], ep.infos["reward_ctrl"][1:]))
                   for ep in episodes[:firsts.shape[0]]]
        np.testing.assert_allclose(firsts["target_episode_return"].numpy(), by_hand, rtol=1e-4, atol=1e-3)
    assert data.expert.shape[0] == (data.union["source"] == 3).sum()
    assert data.info["source_transitions"] == [int((data.union["source"] == k).sum()) for k in range(4)]
    # normalised against the target task's reference returns (the expert dataset's metadata)
    meta = minari.load_dataset(f"rgm/{BWD}/expert-v0").storage.metadata
    assert (data.ref_min_score, data.ref_max_score) == (meta["ref_min_score"], meta["ref_max_score"])


def test_relabelled_union_carries_the_target_reward(family):
    data = load_sharing_data(BWD, **family, relabel=True)
    reward = data.union["next", "reward"] * data.reward_std + data.reward_mean
    real = ~data.union["absorbing"]
    torch.testing.assert_close(reward[real], data.union["next", "target_reward"][real], atol=1e-3, rtol=1e-4)


def test_default_sources_are_the_rest_of_the_family():
    assert default_sources(BWD) == [f"{JUMP}/medium", f"{FWD}/medium"]
    assert default_sources(BWD, "medium-replay") == [f"{JUMP}/medium-replay", f"{FWD}/medium-replay"]
    assert default_sources("walker2d-run-forward", "medium") == ["walker2d-run-backward/medium"]
    assert resolve_dataset(f"{JUMP}/medium") == f"rgm/{JUMP}/medium-v0"
    assert resolve_dataset("mujoco/halfcheetah/expert-v0") == "mujoco/halfcheetah/expert-v0"
    assert source_task("mujoco/halfcheetah/expert-v0") == FWD  # an env's own data: its default task


def test_bad_input_errors(family):
    with pytest.raises(ValueError, match="Unknown task 'halfcheetah-fly'"):
        load_sharing_data("halfcheetah-fly", **family)
    build_tiny("rgm/cheetah/tiny-v0", steps=50, env="halfcheetah")
    with pytest.raises(SharingError, match="Cannot tell which task.*'rgm/cheetah/tiny-v0'"):
        load_sharing_data(BWD, sources=["rgm/cheetah/tiny-v0"])
    build_tiny("rgm/hopper/tiny-v0", steps=100)
    with pytest.raises(SharingError, match=r"rgm/hopper/tiny-v0 has observation/action shapes \(11,\)/\(3,\).*same environment"):
        load_sharing_data(BWD, sources=["rgm/hopper/tiny-v0"])
    with pytest.raises(SharingError, match="The target task 'halfcheetah-jump' has no expert data.*--levels expert"):
        load_sharing_data(JUMP, sources=[f"{FWD}/tiny"], download=False)
    with pytest.raises(SharingError, match="No source datasets"):
        load_sharing_data(BWD, sources=[], unlabelled=[])
