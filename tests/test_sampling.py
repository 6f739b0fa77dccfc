"""The recipes' sampling path is TorchRL's replay buffer: batches equal plain TensorDict indexing with the same
random draws, keep every dtype, and resume from the sampler's state."""
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import ReplayBuffer

from torchrl_rgm.sampling import UnionReplayBuffer, averaged_extraction

N, OBS = 3000, 5


def union():
    g = torch.Generator().manual_seed(0)
    return TensorDict({"observation": torch.randn(N, OBS, generator=g), "action": torch.rand(N, 2, generator=g),
                       ("next", "observation"): torch.randn(N, OBS, generator=g),
                       ("next", "reward"): torch.randn(N, 1, generator=g),
                       ("next", "done"): torch.rand(N, 1, generator=g) < 0.1,
                       "is_expert": torch.rand(N, 1, generator=g) < 0.2,
                       "log_density_ratio": torch.randn(N, 1, generator=g),
                       "episode_return": torch.randn(N, generator=g)}, [N])


def test_batches_equal_indexing_with_the_same_draws():
    data, mu0 = union(), torch.randn(40, OBS)
    buffer = UnionReplayBuffer(data, mu0, 64, seed=7)
    assert isinstance(buffer, ReplayBuffer)
    reference = torch.Generator().manual_seed(7)
    for _ in range(3):
        batch = buffer.sample()
        idx = torch.randint(N, (64,), generator=reference)
        idx0 = torch.randint(40, (64,), generator=reference)
        for key in ("observation", "action", ("next", "observation"), ("next", "reward"), ("next", "done"),
                    "is_expert", "log_density_ratio"):
            assert batch[key].dtype == data[key].dtype and torch.equal(batch[key], data[key][idx]), key
        assert torch.equal(batch["initial_observation"], mu0[idx0])
        assert "episode_return" not in batch.keys()  # only what a training batch needs


def test_the_sampling_state_resumes_the_stream():
    buffer = UnionReplayBuffer(union(), torch.randn(40, OBS), 32, seed=1)
    buffer.sample()
    state = buffer.sampling_state()
    a = buffer.sample()
    other = UnionReplayBuffer(union(), torch.randn(40, OBS), 32, seed=99)
    other.initial = buffer.initial
    other.load_sampling_state(state)
    b = other.sample()
    assert torch.equal(a["observation"], b["observation"]) and torch.equal(a["initial_observation"],
                                                                           b["initial_observation"])


def test_a_batch_larger_than_the_union_is_refused():
    with pytest.raises(ValueError, match="larger than the union"):
        UnionReplayBuffer(union(), torch.randn(4, OBS), N + 1)


def test_extraction_rows_are_drawn_in_proportion_to_their_weights():
    """Each row's share of the extraction draws is its weight's share (chi-square), rows of weight 0 are never drawn,
    each drawn row carries its own entries, and the uniform batch beside them is the one a buffer without weights
    draws (the extraction draws come after it from the same generator)."""
    data = union()
    weights = torch.zeros(N)
    weights[:10] = torch.arange(1.0, 11.0)  # rows 0..9: weights 1..10; every other row 0
    buffer = UnionReplayBuffer(data, torch.randn(40, OBS), 512, seed=5)
    buffer.set_extraction_weights(weights)
    first = buffer.sample()
    plain = UnionReplayBuffer(data, buffer.initial, 512, seed=5).sample()
    assert torch.equal(first["observation"], plain["observation"])
    assert torch.equal(first["initial_observation"], plain["initial_observation"])
    counts = torch.zeros(10, dtype=torch.float64)
    for batch in [first, *(buffer.sample() for _ in range(39))]:
        rows = batch["extraction"]
        assert set(rows.keys(True, True)) == set(batch.exclude("extraction", "initial_observation", "index").keys(True, True))
        match = (rows["observation"][:, None, :] == data["observation"][None, :10, :]).all(-1)
        assert match.any(1).all(), "a row of weight 0 was drawn"
        picked = match.double().argmax(1)
        assert torch.equal(rows["action"], data["action"][picked]) and torch.equal(rows["is_expert"],
                                                                                   data["is_expert"][picked])
        counts += match.double().sum(0)
    expected = counts.sum() * weights[:10].double() / weights.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 37.9, chi2  # chi-square, 9 degrees of freedom: P(> 37.9) = 2e-5


def test_extraction_weights_resume_with_the_sampling_state_and_bad_ones_are_refused():
    data, mu0 = union(), torch.randn(40, OBS)
    buffer = UnionReplayBuffer(data, mu0, 32, seed=1)
    buffer.set_extraction_weights(torch.rand(N, generator=torch.Generator().manual_seed(2)))
    buffer.sample()
    state = buffer.sampling_state()
    a = buffer.sample()
    other = UnionReplayBuffer(data, mu0, 32, seed=99)
    other.load_sampling_state(state)
    b = other.sample()
    assert torch.equal(a["extraction", "observation"], b["extraction", "observation"])
    other.set_extraction_weights(None)
    assert "extraction" not in other.sample().keys()
    for bad, message in [(torch.ones(N - 1), "2999 values for 3000 rows"), (torch.zeros(N), "not all zero"),
                         (torch.full((N,), float("nan")), "finite"), (-torch.ones(N), "non-negative")]:
        with pytest.raises(ValueError, match=message):
            buffer.set_extraction_weights(bad)


def test_averaged_extraction_is_the_running_mean_of_the_refreshes_distributions():
    torch.manual_seed(0)
    refreshes = [torch.rand(N) ** 3 for _ in range(5)]
    expected = torch.stack([w.double() / w.double().sum() for w in refreshes]).mean(0)
    buffer = UnionReplayBuffer(union(), torch.zeros(4, OBS), 8, seed=0)
    buffer.set_extraction_weights(torch.ones(N))  # before the first refresh: uniform, not part of the mean
    for k, w in enumerate(refreshes, start=1):
        buffer.set_extraction_weights(averaged_extraction(w, buffer.extraction_distribution(), k))
    assert torch.allclose(buffer.extraction_distribution(), expected, atol=1e-9)
    latest = refreshes[-1].double() / refreshes[-1].double().sum()
    assert not torch.allclose(expected, latest, atol=1e-3)  # the mean is not the latest
    with pytest.raises(ValueError, match="refresh must be"):
        averaged_extraction(refreshes[0], None, 0)
    with pytest.raises(ValueError, match="non-negative"):
        averaged_extraction(-refreshes[0], None, 1)
