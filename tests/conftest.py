import pytest
import torch
from tensordict import TensorDict

OBS, ACT = 12, 3


def random_batch(batch: int = 64, obs: int = OBS, act: int = ACT, seed: int = 0, expert_frac: float = 0.2):
    g = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "observation": torch.randn(batch, obs, generator=g),
            "initial_observation": torch.randn(batch, obs, generator=g),
            "action": torch.rand(batch, act, generator=g) * 2 - 1,
            "next": {
                "observation": torch.randn(batch, obs, generator=g),
                "reward": torch.randn(batch, 1, generator=g),
                "done": torch.rand(batch, 1, generator=g) < 0.1,
            },
            "log_density_ratio": torch.randn(batch, 1, generator=g),
            "is_expert": torch.rand(batch, 1, generator=g) < expert_frac,
        },
        [batch],
    )


@pytest.fixture
def batch():
    return random_batch()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def requires(module: str, extra: str = "robomimic"):
    """Import an optional extra's module, or skip — unless TORCHRL_RGM_REQUIRE_<EXTRA>=1 (CI's stage for
    that extra), where a missing module is a failure, so a broken install cannot pass by skipping."""
    import importlib
    import os

    if os.environ.get(f"TORCHRL_RGM_REQUIRE_{extra.upper()}") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"needs the {extra} extra: pip install -e '.[{extra}]' ({module})")
