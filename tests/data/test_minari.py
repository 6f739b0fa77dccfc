"""The loader against minari's own reader, transition by transition, and RGM's processing."""
import time

import minari
import numpy as np
import pytest
import torch
from tensordict import MemoryMappedTensor

from torchrl_rgm.data import DatasetNotFoundError, load_rgm_data, load_transitions
from torchrl_rgm.data.pipeline import DatasetError

from .conftest import build_tiny


def test_transitions_equal_minari_episodes(tiny):
    td = load_transitions(tiny)
    i = 0
    n_episodes = 0
    for episode in minari.load_dataset(tiny).iterate_episodes():
        T = len(episode.actions)
        sl = slice(i, i + T)
        np.testing.assert_array_equal(td["observation"][sl].numpy(), episode.observations[:-1].astype(np.float32))
        np.testing.assert_array_equal(td["next", "observation"][sl].numpy(), episode.observations[1:].astype(np.float32))
        np.testing.assert_array_equal(td["action"][sl].numpy(), episode.actions.astype(np.float32))
        np.testing.assert_array_equal(td["next", "reward"][sl, 0].numpy(), episode.rewards.astype(np.float32))
        np.testing.assert_array_equal(td["next", "terminated"][sl, 0].numpy(), episode.terminations)
        np.testing.assert_array_equal(td["next", "truncated"][sl, 0].numpy(), episode.truncations)
        np.testing.assert_array_equal(td["next", "info", "x_velocity"][sl].numpy(),
                                      episode.infos["x_velocity"][1:].astype(np.float32))
        assert (td["episode"][sl] == episode.id).all() and (td["step"][sl] == torch.arange(T)).all()
        # within an episode, s'_t is s_{t+1}
        torch.testing.assert_close(td["next", "observation"][i:i + T - 1], td["observation"][i + 1:i + T])
        i += T
        n_episodes += 1
    assert i == td.shape[0] and n_episodes > 5
    assert td["observation"].abs().sum() > 0  # the torchrl 0.14.1 MinariExperienceReplay defect: all zeros


def test_cache_is_reused_and_never_modified(tiny):
    first = load_transitions(tiny)
    rewards = first["next", "reward"].clone()
    start = time.perf_counter()
    again = load_transitions(tiny)
    assert time.perf_counter() - start < 2.0
    assert isinstance(again["observation"], MemoryMappedTensor)
    load_rgm_data(tiny, reward="negated")
    torch.testing.assert_close(load_transitions(tiny)["next", "reward"], rewards)


def test_processed_data_is_cached_memory_mapped(tiny):
    first = load_rgm_data(tiny, reward="partial", reward_kwargs={"p": 0.3, "seed": 1})
    start = time.perf_counter()
    again = load_rgm_data(tiny, reward="partial", reward_kwargs={"p": 0.3, "seed": 1})
    assert time.perf_counter() - start < 2.0
    assert isinstance(again.union["observation"], MemoryMappedTensor)
    for key in first.union.keys(True, True):
        assert torch.equal(first.union[key], again.union[key]), key
    assert again.reward_std == first.reward_std and again.info == first.info
    other = load_rgm_data(tiny, reward="partial", reward_kwargs={"p": 0.3, "seed": 2})
    assert not torch.equal(other.union["next", "reward"], again.union["next", "reward"])


def test_timeouts_dropped_and_terminals_kept(tiny):
    raw = load_transitions(tiny)
    data = load_rgm_data(tiny, absorbing=False, standardize=False)
    union = data.union
    timeout = raw["next", "truncated"] & ~raw["next", "terminated"]
    assert timeout.sum() > 0 and raw["next", "terminated"].sum() > 0
    assert not (union["next", "truncated"] & ~union["next", "terminated"]).any()
    assert union.shape[0] == raw.shape[0] - int(timeout.sum())
    assert int(union["next", "terminated"].sum()) == int(raw["next", "terminated"].sum())
    torch.testing.assert_close(union["next", "done"], union["next", "terminated"])


def test_absorbing_states_as_method_md_says(tiny):
    plain = load_rgm_data(tiny, absorbing=False, standardize=False).union
    data = load_rgm_data(tiny, absorbing=True, standardize=False)
    union = data.union
    n_term = int(plain["next", "terminated"].sum())
    assert union.shape[0] == plain.shape[0] + n_term
    real, loops = union[~union["absorbing"].squeeze(-1)], union[union["absorbing"].squeeze(-1)]
    absorbing_state = torch.zeros(plain["observation"].shape[-1] + 1)
    absorbing_state[-1] = 1
    # real transitions: indicator 0 on s; terminals now lead to the absorbing state and do not end
    assert (real["observation"][:, -1] == 0).all()
    term = plain["next", "terminated"].squeeze(-1)
    assert torch.equal(real["next", "observation"][term], absorbing_state.expand(n_term, -1))
    torch.testing.assert_close(real["next", "observation"][~term][:, :-1], plain["next", "observation"][~term])
    assert not real["next", "done"].any()
    # self-loops: absorbing -> absorbing, same action, reward 0, done
    assert torch.equal(loops["observation"], absorbing_state.expand(n_term, -1))
    assert torch.equal(loops["next", "observation"], absorbing_state.expand(n_term, -1))
    torch.testing.assert_close(loops["action"], plain["action"][term])
    assert (loops["next", "reward"] == 0).all() and loops["next", "done"].all()
    assert (data.initial_observation[:, -1] == 0).all()
    # DAC-style: the same transitions, but the self-loop never ends
    forever = load_rgm_data(tiny, absorbing=True, standardize=False, terminal_absorbing_loop=False).union
    assert torch.equal(forever["observation"], union["observation"])
    assert not forever["next", "done"].any()


def test_reward_scaling_keeps_the_sign_or_zscores(tiny):
    raw = load_transitions(tiny)
    kept = ~(raw["next", "truncated"] & ~raw["next", "terminated"]).squeeze(-1)
    true_r = raw["next", "reward"][kept]
    scaled = load_rgm_data(tiny, absorbing=False, reward_scaling="scale")
    assert scaled.reward_mean == 0.0
    torch.testing.assert_close(scaled.union["next", "reward"], true_r / true_r.std(), rtol=1e-5, atol=1e-5)
    assert torch.equal(scaled.union["next", "reward"] > 0, true_r > 0)
    z = load_rgm_data(tiny, absorbing=False, reward_scaling="zscore").union["next", "reward"]
    assert abs(z.mean().item()) < 1e-4 and (z < 0).any()
    none = load_rgm_data(tiny, absorbing=False, reward_scaling="none").union["next", "reward"]
    torch.testing.assert_close(none, true_r)
    with pytest.raises(ValueError, match="reward_scaling must be one of"):
        load_rgm_data(tiny, reward_scaling="minmax")


def test_standardisation_and_expert_flag(tiny):
    data = load_rgm_data(tiny, reward="negated", absorbing=False)
    obs = data.union["observation"]
    torch.testing.assert_close(obs.mean(0), torch.zeros(obs.shape[-1]), atol=1e-4, rtol=0)
    r = data.union["next", "reward"]
    assert abs(r.mean().item()) < 1e-4 and abs(r.std().item() - 1) < 1e-3
    raw = load_transitions(tiny)
    # corruption before standardisation: negated raw rewards, z-scored
    kept = ~(raw["next", "truncated"] & ~raw["next", "terminated"]).squeeze(-1)
    expected = (-raw["next", "reward"][kept] - data.reward_mean) / data.reward_std
    torch.testing.assert_close(r, expected, rtol=1e-5, atol=1e-5)
    # the same dataset as expert: its first episode is flagged, not duplicated
    assert data.union["is_expert"].sum() == data.expert.shape[0] > 0
    assert (data.union["episode"][data.union["is_expert"].squeeze(-1)] == 0).all()
    torch.testing.assert_close(data.normalize_observation(raw["observation"][:3])[:, :-1], obs[:3])


def test_separate_expert_dataset_is_added_to_the_union(tiny):
    build_tiny("rgm/hopper/tiny-expert-v0", steps=200, seed=5, policy="actor", max_steps=25)
    data = load_rgm_data(tiny, "rgm/hopper/tiny-expert-v0", n_expert_trajectories=2, absorbing=False)
    n_expert = data.expert.shape[0]
    assert data.union["is_expert"].sum() == n_expert and len(torch.unique(data.expert["episode"])) == 2
    without = load_rgm_data(tiny, "rgm/hopper/tiny-expert-v0", n_expert_trajectories=2, absorbing=False,
                            add_expert_to_union=False)
    assert without.union.shape[0] == data.union.shape[0] - n_expert and not without.union["is_expert"].any()
    batch = data.replay_buffer("union", batch_size=7).sample()
    assert batch.shape == (7,) and "is_expert" in batch.keys()


def test_unknown_dataset_names_the_directory_and_local_ids(tiny, tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_transitions("rgm/hopper/nope-v0", download=False)
    message = str(err.value)
    assert str(tmp_path / "minari") in message and tiny in message and "torchrl_rgm.generation.build" in message


def test_shape_mismatch_between_expert_and_union(tiny):
    build_tiny("rgm/halfcheetah/tiny-v0", steps=100, env="halfcheetah", max_steps=50)
    with pytest.raises(DatasetError, match="observation shape"):
        load_rgm_data(tiny, "rgm/halfcheetah/tiny-v0")


def test_too_many_expert_trajectories(tiny):
    n = len(torch.unique(load_transitions(tiny)["episode"]))
    with pytest.raises(DatasetError, match=f"only {n} episodes"):
        load_rgm_data(tiny, n_expert_trajectories=n + 1)


def test_non_finite_values_are_reported(tiny):
    from minari.data_collector import EpisodeBuffer

    from torchrl_rgm.generation.build import write_dataset

    obs = np.random.default_rng(0).normal(size=(6, 11))
    bad = EpisodeBuffer(id=0, observations=list(obs), actions=list(np.zeros((5, 3), np.float32)),
                        rewards=[1.0, float("nan"), 1.0, 1.0, 1.0], terminations=[False] * 4 + [True],
                        truncations=[False] * 5, infos={})
    write_dataset("rgm/hopper/bad-v0", [bad], "hopper", 0.0, 1.0, "bad", overwrite=False)
    with pytest.raises(DatasetError, match=r"NaN/inf in \('next', 'reward'\)"):
        load_rgm_data("rgm/hopper/bad-v0")
