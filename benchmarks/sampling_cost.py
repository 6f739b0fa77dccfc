"""What sampling a batch costs next to one update step (issue 19): the earlier path (indexing the union's
TensorDict, then the initial observations), the recipes' path (:class:`torchrl_rgm.sampling.UnionReplayBuffer`,
TorchRL's replay buffer over a flat storage), and one compiled float32 RGM update, in one process, interleaved.

Hopper-sized union (240k transitions, observation 12, action 3), batch 512, MLPs 2x256.

    python benchmarks/sampling_cost.py [--rounds 5] [--batches 300] [--json benchmarks/results/sampling_cost.json]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.update_throughput import BATCH, make_data, package_update, precompute_log_ratio  # noqa: E402
from torchrl_rgm.report import write_json  # noqa: E402
from torchrl_rgm.sampling import UNION_KEYS, UnionReplayBuffer  # noqa: E402

N = 240_000


def indexing_sampler(union, initial, seed: int = 0):
    """The earlier ``TransitionSampler``: one TensorDict index per batch, then the initial observations."""
    union = union.select(*[k for k in UNION_KEYS if k in union.keys(True)]).to_tensordict()
    generator = torch.Generator().manual_seed(seed)

    def sample():
        idx = torch.randint(union.shape[0], (BATCH,), generator=generator)
        idx0 = torch.randint(initial.shape[0], (BATCH,), generator=generator)
        batch = union[idx]
        batch.set("initial_observation", initial[idx0])
        return batch
    return sample


def per_call_us(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batches", type=int, default=300)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "sampling_cost.json")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    data = precompute_log_ratio(make_data(N, "cpu"), "cpu")
    initial = data["initial_observation"][:3000].clone()
    old = indexing_sampler(data, initial)
    buffer = UnionReplayBuffer(data, initial, BATCH, seed=0)
    update = package_update("cpu", compile=True)
    batch = buffer.sample()
    for _ in range(20):  # compile and warm up
        update(batch)
    rows = {"indexing (earlier)": [], "UnionReplayBuffer": [], "compiled update": []}
    for _ in range(args.rounds):  # interleaved: each round measures all three
        rows["indexing (earlier)"].append(per_call_us(old, args.batches))
        rows["UnionReplayBuffer"].append(per_call_us(buffer.sample, args.batches))
        rows["compiled update"].append(per_call_us(lambda: update(batch), max(20, args.batches // 10)))
    median = {k: statistics.median(v) for k, v in rows.items()}
    step = median["compiled update"]
    result = {"cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
              "batch": BATCH, "union": N, "median_us": median,
              "share_of_step": {k: median[k] / (median[k] + step) for k in ("indexing (earlier)", "UnionReplayBuffer")},
              "speedup": median["indexing (earlier)"] / median["UnionReplayBuffer"], "rounds": rows}
    print(f"{'':22s}{'µs per call':>12s}{'share of sample+step':>22s}")
    for k, v in median.items():
        share = f"{result['share_of_step'][k]:.1%}" if k in result["share_of_step"] else ""
        print(f"{k:22s}{v:12.0f}{share:>22s}")
    print(f"buffer vs indexing: {result['speedup']:.1f}x faster")
    write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
