import pytest

from torchrl_rgm.generation.build import rollouts, write_dataset
from torchrl_rgm.modules import make_actor


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Every test gets its own Minari directory and conversion cache."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("TORCHRL_RGM_CACHE", str(tmp_path / "cache"))
    return tmp_path


def build_tiny(ds_id="rgm/hopper/tiny-v0", steps=600, seed=0, policy="random", env="hopper", max_steps=None):
    """A small real dataset: uniform actions (short episodes, terminals) or an untrained actor."""
    if policy == "random":
        sources = [(None, 0.0, 1.0)]
    else:
        import torch

        torch.manual_seed(seed)
        from torchrl_rgm.generation.tasks import make_env

        e = make_env(env)
        actor = make_actor(e.observation_space.shape[0], e.action_space.shape[0], hidden=(16,))
        sources = [(actor, 0.3, 1.0)]
    episodes = rollouts(env, sources, steps, seed, "tiny", max_episode_steps=max_steps)
    return write_dataset(ds_id, episodes, env, -10.0, 100.0, "tiny test dataset", overwrite=False)


@pytest.fixture
def tiny():
    # an untrained actor with noise and a 25-step limit: both terminals and timeouts
    build_tiny(policy="actor", max_steps=25)
    return "rgm/hopper/tiny-v0"
