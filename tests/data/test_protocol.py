"""The authors' protocol as data options, and D4RL-style medium-replay (docs/results.md, "The paper's protocol")."""
import json

import numpy as np
import pytest
import torch

import torchrl_rgm.generation.build as build_mod
from torchrl_rgm.data import load_rgm_data
from torchrl_rgm.generation.behaviour import POLICY_DIR

from .conftest import build_tiny


def test_terminal_done_keeps_done_on_terminal_transitions(tiny):
    """protocol=paper: a terminal transition keeps done = 1 while its s' becomes the absorbing state; the
    self-loops are unchanged; every other transition is as in the default."""
    default = load_rgm_data(tiny, standardize=False).union
    paper = load_rgm_data(tiny, standardize=False, terminal_done=True).union
    assert torch.equal(default["observation"], paper["observation"])
    assert torch.equal(default["next", "observation"], paper["next", "observation"])
    real = ~paper["absorbing"].squeeze(-1)
    into_absorbing = real & (paper["next", "observation"][:, -1] == 1)
    assert into_absorbing.any()
    assert paper["next", "done"][into_absorbing].all() and not default["next", "done"][into_absorbing].any()
    assert not paper["next", "done"][real & ~into_absorbing].any()
    assert torch.equal(paper["next", "done"][~real], default["next", "done"][~real])


def test_expert_transitions_in_the_union_can_earn_zero(tiny):
    build_tiny("rgm/hopper/tiny-expert-v0", steps=200, seed=5, policy="actor", max_steps=25)
    kw = dict(absorbing=False, reward_scaling="none")
    given = load_rgm_data(tiny, "rgm/hopper/tiny-expert-v0", **kw).union
    zero = load_rgm_data(tiny, "rgm/hopper/tiny-expert-v0", expert_union_reward="zero", **kw).union
    expert = zero["is_expert"].squeeze(-1)
    assert expert.any() and (zero["next", "reward"][expert] == 0).all()
    assert (given["next", "reward"][expert] != 0).any()
    torch.testing.assert_close(zero["next", "reward"][~expert], given["next", "reward"][~expert])
    with pytest.raises(ValueError, match="expert_union_reward must be one of"):
        load_rgm_data(tiny, expert_union_reward="one")


@pytest.mark.parametrize("env", ["hopper", "walker2d", "halfcheetah"])
def test_d4rl_style_replay_follows_training(env):
    """medium-replay = what training collected up to medium: uniform warm-up, then each snapshot for the
    training steps nearest to its own, computed here independently from the shipped policies.json."""
    info = json.loads((POLICY_DIR / env / "policies.json").read_text())
    sources, steps = build_mod.replay_plan(env, 0.1)
    medium = info["medium"]["step"]
    assert steps == medium
    snaps = sorted({v["step"] for k, v in info.items() if k.startswith("replay_")})
    # each 1000-step block of training after the warm-up goes to the snapshot nearest to its middle
    owner = [min(snaps, key=lambda s: (abs(s - (t + 500)), s)) for t in range(build_mod.WARMUP_STEPS, medium, 1000)]
    shares = [build_mod.WARMUP_STEPS / medium] + [owner.count(s) * 1000 / medium for s in snaps]
    got = [share for *_, share in sources]
    assert sources[0][0] is None and sources[0][1] == 0.0  # the warm-up: uniform actions, no noise
    assert all(noise == 0.1 for _, noise, _ in sources[1:])
    np.testing.assert_allclose(got, [s for s in shares if s > 0], atol=1000 / medium)
    assert sum(got) == pytest.approx(1.0)


def test_even_proportions_are_the_earlier_construction():
    sources, steps = build_mod.replay_plan("hopper", 0.1, "even")
    assert steps is None and [s for *_, s in sources] == pytest.approx([0.1] + [0.18] * 5)
    with pytest.raises(ValueError, match="replay proportions"):
        build_mod.replay_plan("hopper", 0.1, "uniform")


def test_replay_build_size_is_the_training_length():
    built = build_mod.build_env("halfcheetah", levels=["medium-replay"], scale=0.02, namespace="rgm-small")
    info = built["rgm-small/halfcheetah/medium-replay-v0"]
    medium = json.loads((POLICY_DIR / "halfcheetah" / "policies.json").read_text())["medium"]["step"]
    assert info["steps"] >= int(medium * 0.02)
