"""The recipes' sampling path is TorchRL's replay buffer: batches equal plain TensorDict indexing with the same
random draws, keep every dtype, and resume from the sampler's state."""
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import ReplayBuffer

from torchrl_rgm.sampling import UnionReplayBuffer

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
