"""A vectorised group of RGM runs (``torchrl_rgm.vectorized``) trains each run exactly as it would train alone.

The independent solution is the run itself: the same seed, networks, batches and noise stepped by its own
:class:`~torchrl_rgm.train.RGMUpdate`. Run ``i`` of a group must match it to 1e-5 after 100 float32 updates,
for the deterministic and the tanh-Gaussian actor, and a group interrupted, checkpointed per run and resumed must
continue as if it had not stopped.
"""
from __future__ import annotations

import io

import pytest
import torch
from tensordict import TensorDict

from torchrl_rgm.modules import make_actor, make_reward_correction_network, make_value_network
from torchrl_rgm.objectives import RGMLoss
from torchrl_rgm.sampling import UnionReplayBuffer
from torchrl_rgm.train import RGMUpdate
from torchrl_rgm.vectorized import GroupError, VectorizedRGMUpdate

OBS, ACT, SIZE, BATCH, STEPS = 11, 3, 2000, 64, 100


def make_union(seed: int):
    """A union with every entry RGM reads; its values differ per seed (as different reward settings would)."""
    g = torch.Generator().manual_seed(1000 + seed)
    nxt = TensorDict({"observation": torch.randn(SIZE, OBS, generator=g), "reward": torch.randn(SIZE, 1, generator=g),
                      "done": torch.rand(SIZE, 1, generator=g) < 0.05}, [SIZE])
    union = TensorDict({"observation": torch.randn(SIZE, OBS, generator=g),
                        "action": torch.rand(SIZE, ACT, generator=g) * 2 - 1,
                        "log_density_ratio": torch.randn(SIZE, 1, generator=g),
                        "is_expert": torch.rand(SIZE, 1, generator=g) < 0.1, "next": nxt}, [SIZE])
    return union, torch.randn(500, OBS, generator=g)


def make_run(seed: int, stochastic: bool, alpha: float = 0.5, correction: bool = True):
    torch.manual_seed(seed)
    value = make_value_network(OBS, (32, 32))
    actor = make_actor(OBS, ACT, stochastic=stochastic, hidden=(32, 32))
    correction = make_reward_correction_network(OBS, ACT, (32, 32)) if correction else None  # None: SMODICE
    loss = RGMLoss(value, actor, correction, alpha=alpha, action_dim=ACT)
    update = RGMUpdate(loss, correction_lr=1e-4, total_steps=STEPS, noise_seed=seed + 7)
    union, initial = make_union(seed)
    return loss, update, UnionReplayBuffer(union, initial, BATCH, seed=seed)


def train_alone(seed: int, stochastic: bool, steps: int = STEPS, correction: bool = True):
    loss, update, buffer = make_run(seed, stochastic, correction=correction)
    for _ in range(steps):
        metrics = update(buffer.sample())
    return loss, update, metrics


def max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("stochastic,correction", [(False, True), (True, True), (False, False)],
                         ids=["deterministic", "tanh-gaussian", "smodice"])
def test_each_run_of_a_group_equals_the_run_trained_alone(stochastic, correction):
    seeds = [0, 1, 2]
    runs = [make_run(s, stochastic, correction=correction) for s in seeds]
    group = VectorizedRGMUpdate([update for _, update, _ in runs])
    for _ in range(STEPS):
        metrics = group([buffer.sample() for _, _, buffer in runs])
    group.sync_to_runs()
    assert metrics.shape == (len(seeds),)
    for i, seed in enumerate(seeds):
        alone, alone_update, alone_metrics = train_alone(seed, stochastic, correction=correction)
        loss, update, _ = runs[i]
        assert max_difference(loss, alone) < 1e-5, f"run {i}"
        for key in ("loss_value", "loss_actor", *(("loss_reward_correction",) if correction else ())):
            torch.testing.assert_close(metrics[i][key], alone_metrics[key], rtol=1e-4, atol=1e-5)
        # the run's own optimiser and schedule were written back: its checkpoint is a lone run's
        ours, theirs = update.state_dict(), alone_update.state_dict()
        assert ours["scheduler"]["last_epoch"] == theirs["scheduler"]["last_epoch"] == STEPS
        for pid, state in theirs["optimizer"]["state"].items():
            torch.testing.assert_close(ours["optimizer"]["state"][pid]["exp_avg"], state["exp_avg"], rtol=1e-4,
                                       atol=1e-6)
    # the runs really differ (different seeds and data): the check above is not comparing one run with itself
    assert max_difference(runs[0][0], runs[1][0]) > 1e-2


def test_a_group_resumed_from_per_run_checkpoints_continues_exactly():
    seeds, stochastic, half = [3, 4], True, STEPS // 2
    runs = [make_run(s, stochastic) for s in seeds]
    group = VectorizedRGMUpdate([update for _, update, _ in runs])
    for _ in range(half):
        group([buffer.sample() for _, _, buffer in runs])
    group.sync_to_runs()
    saved = []
    for loss, update, buffer in runs:  # what a recipe checkpoints per run, through weights_only loading
        blob = io.BytesIO()
        torch.save({"loss": loss.state_dict(), "update": update.state_dict(),
                    "sampler": buffer.sampling_state()}, blob)
        saved.append(torch.load(io.BytesIO(blob.getvalue()), weights_only=True))
    resumed = [make_run(s, stochastic) for s in seeds]
    for (loss, update, buffer), state in zip(resumed, saved):
        loss.load_state_dict(state["loss"])
        update.load_state_dict(state["update"])
        buffer.load_sampling_state(state["sampler"])
    group = VectorizedRGMUpdate([update for _, update, _ in resumed])
    for _ in range(STEPS - half):
        group([buffer.sample() for _, _, buffer in resumed])
    group.sync_to_runs()
    for (loss, _, _), seed in zip(resumed, seeds):
        alone, _, _ = train_alone(seed, stochastic)
        assert max_difference(loss, alone) < 1e-5


def test_runs_that_differ_in_a_hyperparameter_are_refused_by_name():
    runs = [make_run(0, False), make_run(1, False, alpha=1.0)]
    with pytest.raises(GroupError, match=r"run 1 differs from run 0 in \['alpha'\]"):
        VectorizedRGMUpdate([update for _, update, _ in runs])


def test_given_actor_noise_is_the_reparameterised_sample():
    """The batch's ``actor_noise`` gives the loss exactly what ``dist.rsample()`` gives with that draw."""
    loss, _, buffer = make_run(0, stochastic=True)
    batch = buffer.sample()
    torch.manual_seed(5)
    drawn = loss(batch)
    torch.manual_seed(5)
    noise = torch.randn(batch.get("action").shape)
    given = loss(batch.clone().set("actor_noise", noise))
    torch.testing.assert_close(given["loss_actor"], drawn["loss_actor"])
    torch.testing.assert_close(given["loss_entropy_coef"], drawn["loss_entropy_coef"])
    other = loss(batch.clone().set("actor_noise", noise + 1.0))
    assert not torch.allclose(other["loss_actor"], drawn["loss_actor"])
