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
    if name not in ("td3bc", "seabo_td3bc"):  # TD3+BC steps the actor every policy_delay updates
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
    with pytest.raises(AlgorithmError, match=r"Unknown algorithm 'ppo'; valid choices are \['bc', 'bc_expert', 'dwbc'"):
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


def _union_with_expert(n=40, n_expert=10):
    from tensordict import TensorDict

    is_expert = torch.zeros(n, 1, dtype=torch.bool)
    is_expert[-n_expert:] = True
    absorbing = torch.zeros(n, 1, dtype=torch.bool)
    absorbing[-1] = True  # the expert's absorbing self-loop
    return TensorDict({"observation": torch.arange(n, dtype=torch.float32).unsqueeze(-1), "is_expert": is_expert,
                       "absorbing": absorbing}, [n])


def test_bc_expert_trains_on_the_experts_own_transitions_only():
    algorithm = get_algorithm("bc_expert")
    cfg = compose("bc_expert")
    union = _union_with_expert()
    data = SimpleNamespace(expert=None, expert_id="e")
    cfg.algo.batch_size = 4
    rows = algorithm.training_set(cfg, data, union)
    assert rows.get("observation").reshape(-1).tolist() == list(range(30, 39))  # expert rows, absorbing loop left out
    weights = algorithm.extraction_weights(cfg, None, union, None, "cpu")
    assert weights.tolist() == [0.0] * 30 + [1.0] * 9 + [0.0]
    # every other algorithm samples the union as it is
    assert get_algorithm("bc").training_set(cfg, data, union) is union


def test_bc_expert_falls_back_to_the_expert_set_and_refuses_a_batch_larger_than_it():
    from torchrl_rgm.config import ConfigError

    algorithm = get_algorithm("bc_expert")
    cfg = compose("bc_expert")
    union = _union_with_expert()
    union.set("is_expert", torch.zeros(40, 1, dtype=torch.bool))  # the authors' protocol: D^E outside the union
    expert = _union_with_expert(12, 12)
    cfg.algo.batch_size = 8
    rows = algorithm.training_set(cfg, SimpleNamespace(expert=expert, expert_id="e"), union)
    assert rows.shape[0] == 11 and not rows.get("absorbing").any()
    cfg.algo.batch_size = 12
    with pytest.raises(ConfigError, match=r"algo.batch_size=12 is larger than the expert set \(11 transitions of e\)"):
        algorithm.training_set(cfg, SimpleNamespace(expert=expert, expert_id="e"), union)
