import os

import pytest
import torch
from tensordict import TensorDict


def _share_the_cores() -> None:
    """Under ``pytest -n <workers>`` each worker gets ``cores // workers`` threads (at least 1), in its own torch and
    in every process it starts (``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, unless already set; a test that is about
    threads sets its own). Left at torch's default, two workers on two cores each run two-thread recipes: four OpenMP
    threads spinning on two cores made the group tests 4x slower in the suite than alone (measured: a killed group's
    resume 141 s against 29.5 s, AMD EPYC, 2 vCPUs)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers <= 1 or "OMP_NUM_THREADS" in os.environ:  # one worker, or the user's own choice: left as it is
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    torch.set_num_threads(threads)


_share_the_cores()

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
