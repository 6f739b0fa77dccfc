"""Imperfect-reward transforms: statistics, seeds, untouched fields, replay buffers."""
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from torchrl_rgm.data import REWARD_SETTINGS, load_rgm_data, load_transitions, make_reward_transform


def transitions(n=20_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "observation": torch.randn(n, 4, generator=g),
            "transition_id": torch.arange(n),
            "episode_return": torch.rand(n, generator=g) * 100,
            "next": {
                "reward": torch.rand(n, 1, generator=g) + 0.5,  # positive: a flip is visible
                "last": torch.rand(n, 1, generator=g) < 0.1,
                "info": {
                    "reward_forward": torch.randn(n, generator=g),
                    "reward_ctrl": -torch.rand(n, generator=g),
                    "reward_survive": torch.ones(n),
                },
            },
        },
        [n],
    )


def reward_of(setting, td, **kw):
    return make_reward_transform(setting, **kw)(td.clone())["next", "reward"]


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_partial_flips_a_fraction_p(p):
    td = transitions()
    r = reward_of("partial", td, p=p, seed=3)
    flipped = (r < 0).float().mean().item()
    assert abs(flipped - p) < 4 * (p * (1 - p) / td.shape[0]) ** 0.5 + 1e-3
    torch.testing.assert_close(r.abs(), td["next", "reward"])


def test_seeds_reproduce_and_differ():
    td = transitions()
    for setting, kw in (("partial", {"p": 0.5}), ("noisy", {"sigma": 1.0})):
        a, b = reward_of(setting, td, seed=1, **kw), reward_of(setting, td, seed=1, **kw)
        c = reward_of(setting, td, seed=2, **kw)
        assert torch.equal(a, b) and not torch.equal(a, c), setting
    # keyed on transition ids, not on order: a shuffled dataset gets the same rewards per transition
    perm = torch.randperm(td.shape[0])
    shuffled = reward_of("partial", td[perm], p=0.5, seed=1)
    assert torch.equal(shuffled, reward_of("partial", td, p=0.5, seed=1)[perm])


def test_noisy_statistics():
    td = transitions(50_000)
    noise = reward_of("noisy", td, sigma=2.0, seed=0) - td["next", "reward"]
    assert abs(noise.mean().item()) < 0.05 and abs(noise.std().item() - 2.0) < 0.05


def test_deterministic_settings():
    td = transitions(100)
    torch.testing.assert_close(reward_of("negated", td), -td["next", "reward"])
    assert (reward_of("zero", td) == 0).all()
    torch.testing.assert_close(reward_of("true", td), td["next", "reward"])
    info = td["next", "info"]
    expected = (-info["reward_forward"] + info["reward_ctrl"] + info["reward_survive"]).unsqueeze(-1)
    torch.testing.assert_close(reward_of("other_task", td), expected)
    sparse = reward_of("sparse", td, threshold=50.0)
    success = (td["episode_return"] >= 50).unsqueeze(-1) & td["next", "last"]
    assert torch.equal(sparse, success.float()) and sparse.sum() > 0


@pytest.mark.parametrize("setting", sorted(REWARD_SETTINGS))
def test_other_fields_are_untouched(setting):
    td = transitions(500)
    kw = {"threshold": 50.0} if setting == "sparse" else {}
    out = make_reward_transform(setting, **kw)(td.clone())
    assert set(out.keys(True, True)) == set(td.keys(True, True))
    for key in td.keys(True, True):
        if key != ("next", "reward"):
            assert torch.equal(out[key], td[key]), key


def test_replay_buffer_transform_matches_the_raw_transform():
    td = transitions(1000)
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(1000), batch_size=64)
    rb.extend(td.clone())
    rb.append_transform(make_reward_transform("partial", p=0.5, seed=7))
    raw = reward_of("partial", td, p=0.5, seed=7)
    for _ in range(3):
        batch = rb.sample()
        assert torch.equal(batch["next", "reward"], raw[batch["transition_id"]])


def test_composition_and_errors():
    td = transitions(100)
    composed = make_reward_transform(["negated", "negated"])(td.clone())
    torch.testing.assert_close(composed["next", "reward"], td["next", "reward"])
    with pytest.raises(ValueError, match="accepted values are.*negated.*other_task.*partial"):
        make_reward_transform("inverted")
    with pytest.raises(ValueError, match="p must lie in"):
        make_reward_transform("partial", p=1.5)
    with pytest.raises(KeyError, match="transition_id"):
        make_reward_transform("partial")(td.exclude("transition_id"))


def test_on_a_real_dataset_sparse_and_other_task(tiny):
    data = load_rgm_data(tiny, reward="sparse", standardize=False, absorbing=False)
    raw = load_transitions(tiny)
    r = data.union["next", "reward"]
    assert set(r.unique().tolist()) <= {0.0, 1.0} and r.sum() >= 1
    episodes_rewarded = data.union["episode"][r.squeeze(-1) > 0]
    assert len(episodes_rewarded) == len(torch.unique(episodes_rewarded))  # once per episode
    other = load_rgm_data(tiny, reward="other_task", standardize=False, absorbing=False).union
    info = other["next", "info"]
    torch.testing.assert_close(other["next", "reward"].squeeze(-1),
                               -info["reward_forward"] + info["reward_ctrl"] + info["reward_survive"])
    assert raw.shape[0] > 0
