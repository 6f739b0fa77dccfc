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
from torchrl_rgm.train import RGMUpdate  # noqa: E402
from torchrl_rgm.modules import make_actor, make_reward_correction_network, make_value_network  # noqa: E402
from torchrl_rgm.objectives import RewardCorrectionLoss, RGMLoss  # noqa: E402
DEV = sys.argv[1] if len(sys.argv) > 1 else "cuda"
print(torch.__version__, torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu", flush=True)

def make(device, **kw):
    torch.manual_seed(0)
    # built on the CPU from one seed, then moved: the same initial weights on every device
    value = make_value_network(ut.OBS).to(device)
    corr = make_reward_correction_network(ut.OBS, ut.ACT).to(device)
    actor = make_actor(ut.OBS, ut.ACT).to(device)
    rgm = RGMLoss(value, actor, corr, alpha=ut.ALPHA, gamma=ut.GAMMA, res_scale=ut.RES_SCALE)
    up = RewardCorrectionLoss(corr, value, alpha=ut.ALPHA, gamma=ut.GAMMA, res_scale=ut.RES_SCALE)
    return RGMUpdate(rgm, up, device=device, **kw)

# 1. the same update on CPU and on DEV gives the same losses (float32)
torch.manual_seed(1)
data = ut.precompute_log_ratio(ut.make_data(20000, "cpu"), "cpu")
batches = ut.make_batches(data, "cpu")[:20]
cpu, gpu = make("cpu"), make(DEV)
worst = 0.0
for b in batches:
    mc, mg = cpu(b), gpu(b.to(DEV))
    worst = max([worst] + [abs(float(mc[k]) - float(mg[k])) for k in mc.keys() if k.startswith("loss_")])
print(f"max |loss on cpu - loss on {DEV}| over {len(batches)} updates: {worst:.2e}", flush=True)

if len(sys.argv) > 3 and sys.argv[3] == "eq":
    sys.exit(0)
# 2. throughput on CUDA: eager, compiled, compiled with CUDA graphs (reduce-overhead), bf16
gdata = ut.precompute_log_ratio(ut.make_data(100_000, DEV), DEV)
gb = ut.make_batches(gdata, DEV)
variants = {
    "eager": make(DEV),
    "compiled": make(DEV, compile=True),
    "compiled_cudagraphs": make(DEV, compile=True, compile_mode="reduce-overhead" if DEV == "cuda" else None),
    "compiled_bf16": make(DEV, compile=True, autocast_dtype=torch.bfloat16),
}
for name, step in variants.items():
    for i in range(30):
        step(gb[i % len(gb)])
(torch.cuda.synchronize() if DEV == "cuda" else None)
N = int(sys.argv[2]) if len(sys.argv) > 2 else 300
res = {name: [] for name in variants}
for r in range(3):
    for name, step in variants.items():
        res[name].append(ut.time_updates(step, gb, N, torch.device(DEV)))
for name, v in res.items():
    v = sorted(v)[1]
    print(f"{name:22s} {v:8.1f} updates/s  {v / sorted(res['eager'])[1]:.2f}x eager", flush=True)
