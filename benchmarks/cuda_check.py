"""CUDA check of the update step: the same losses as on the CPU, and eager / compiled / CUDA-graph throughput.

    python benchmarks/cuda_check.py cuda 300        # device, timed updates per variant and round
    python benchmarks/cuda_check.py cuda 300 eq     # the equality check only

Needs a GPU (runs on the CPU too, as a smoke test: ``python benchmarks/cuda_check.py cpu 5``).
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import update_throughput as ut  # noqa: E402

DEV = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cuda")
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 300
ROUNDS = 3
print(torch.__version__, torch.cuda.get_device_name(0) if DEV.type == "cuda" else "cpu", flush=True)

# 1. the same update, from the same seed, on the CPU and on DEV gives the same losses (float32)
data = ut.precompute_log_ratio(ut.make_data(20_000, "cpu"), "cpu")
batches = ut.make_batches(data, "cpu")
cpu, dev = ut.package_update("cpu", compile=False, seed=0), ut.package_update(DEV, compile=False, seed=0)
worst = 0.0
for b in batches:
    mc, md = cpu(b), dev(b.to(DEV))
    worst = max([worst] + [abs(float(mc[k]) - float(md[k])) for k in mc.keys() if k.startswith("loss_")])
print(f"max |loss on cpu - loss on {DEV}| over {len(batches)} updates: {worst:.2e}", flush=True)
if len(sys.argv) > 3 and sys.argv[3] == "eq":
    sys.exit(0)

# 2. throughput on DEV: eager, compiled, compiled with CUDA graphs (reduce-overhead), bf16
dev_batches = ut.make_batches(ut.precompute_log_ratio(ut.make_data(100_000, DEV), DEV), DEV)
variants = {
    "eager": ut.package_update(DEV, compile=False),
    "compiled": ut.package_update(DEV, compile=True),
    "compiled_cudagraphs": ut.package_update(
        DEV, compile=True, compile_mode="reduce-overhead" if DEV.type == "cuda" else None),
    "compiled_bf16": ut.package_update(DEV, compile=True, autocast_dtype=torch.bfloat16),
}
for step in variants.values():  # warm-up; compilation happens here
    for i in range(30):
        step(dev_batches[i % len(dev_batches)])
rounds = {name: [] for name in variants}
for _ in range(ROUNDS):  # interleaved, median reported
    for name, step in variants.items():
        rounds[name].append(ut.time_updates(step, dev_batches, STEPS, DEV))
median = {name: sorted(v)[ROUNDS // 2] for name, v in rounds.items()}
for name, v in median.items():
    print(f"{name:22s} {v:8.1f} updates/s  {v / median['eager']:.2f}x eager", flush=True)
