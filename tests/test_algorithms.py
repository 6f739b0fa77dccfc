"""The algorithm registry: every algorithm has its config, builds from it alone, and declares what it needs."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from torchrl_rgm.algorithms import ALGORITHMS, Algorithm, AlgorithmError, get_algorithm, register

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "recipes" / "config"


def compose(algo: str, config: str = "rgm_mujoco"):
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG), version_base=None):
        return hydra_compose(config_name=config, overrides=[f"algo={algo}", "compile=false", "budget.updates=10"])


def test_every_registered_algorithm_has_its_config_file_and_back():
    files = {p.stem for p in (CONFIG / "algo").glob("*.yaml")}
    assert files == set(ALGORITHMS)
    for name in ALGORITHMS:
        assert compose(name, "rgm_datasharing" if name == "iql_relabeled" else "rgm_mujoco").algo.name == name


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_each_algorithm_builds_a_learner_that_trains(name):
    cfg = compose(name, "rgm_datasharing" if name == "iql_relabeled" else "rgm_mujoco")
    algorithm = get_algorithm(name)
    algorithm.validate(cfg.algo)
    data = SimpleNamespace(obs_dim=6, action_dim=2)
    learner = algorithm.build(cfg, data, "cpu")
    assert learner.networks["actor"] is learner.actor
    assert (learner.discriminator_loss is not None) == algorithm.uses_discriminator
    assert ("discriminator" in learner.networks) == algorithm.uses_discriminator
    n = 32
    batch = {"observation": torch.randn(n, 6), "action": torch.rand(n, 2) * 2 - 1, "initial_observation": torch.randn(n, 6),
             ("next", "observation"): torch.randn(n, 6), ("next", "reward"): torch.randn(n, 1),
             ("next", "done"): torch.zeros(n, 1, dtype=torch.bool), "log_density_ratio": torch.randn(n, 1),
             "is_expert": torch.zeros(n, 1, dtype=torch.bool)}
    from tensordict import TensorDict

    before = {k: v.clone() for k, v in learner.actor.state_dict().items()}
    metrics = learner.update(TensorDict(batch, [n]))
    assert all(torch.isfinite(v).all() for v in metrics.values())
    if name != "td3bc":  # TD3+BC steps the actor every policy_delay updates
        assert any(not torch.equal(before[k], v) for k, v in learner.actor.state_dict().items())
    state = learner.state_dict()
    rebuilt = algorithm.build(cfg, data, "cpu")
    rebuilt.load_state_dict(state)
    for k, v in learner.actor.state_dict().items():
        assert torch.equal(rebuilt.actor.state_dict()[k], v)


def test_a_checkpoint_of_another_algorithm_is_refused_by_name():
    rgm = get_algorithm("rgm").build(compose("rgm"), SimpleNamespace(obs_dim=4, action_dim=2), "cpu")
    iql = get_algorithm("iql").build(compose("iql"), SimpleNamespace(obs_dim=4, action_dim=2), "cpu")
    with pytest.raises(ValueError, match=r"holds the networks \['actor', 'correction', 'discriminator', 'value'\] "
                                         r"but this algorithm has \['actor', 'value'\]"):
        iql.load_state_dict(rgm.state_dict())


def test_unknown_and_duplicate_names():
    with pytest.raises(AlgorithmError, match=r"Unknown algorithm 'ppo'; valid choices are \['bc', 'dwbc'"):
        get_algorithm("ppo")
    with pytest.raises(AlgorithmError, match="Two algorithms are named 'bc'"):
        @register
        class Again(Algorithm):
            name = "bc"


def test_what_each_algorithm_declares():
    reads = {n for n, a in ALGORITHMS.items() if a.reads_reward}
    assert reads == {"rgm", "iql", "td3bc", "iql_shared", "iql_relabeled"}
    assert {n for n, a in ALGORITHMS.items() if a.uses_discriminator} == {"rgm", "smodice", "dwbc"}
    assert {n for n, a in ALGORITHMS.items() if a.relabels} == {"iql_relabeled"}
    assert ALGORITHMS["iql"].actor == "stochastic" and ALGORITHMS["td3bc"].actor == "deterministic"
