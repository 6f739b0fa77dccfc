"""Exploratory (docs/results.md, "Where the late fall comes from"): BC for 24k updates on rows drawn in proportion
to rho**power (power 0: the expert rows), or to a saved w (WFILE=<run>.w.pt, WKEY=w24; ALT=1 alternates w20/w24 every
1,000 updates after a uniform first 1,000); scores every 4k updates.
    python benchmarks/late_fall/fixed_weight_bc.py hopper 0 1,2 [recipe overrides]"""
import json
import os
import sys
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "recipes"), str(ROOT)]
import numpy as np, torch
torch.set_num_threads(1)
from ratio_ceiling import config, KEYS
from torchrl_rgm.algorithms import get_algorithm
from torchrl_rgm.envs import make_policy_fn
from torchrl_rgm.sampling import UnionReplayBuffer
from torchrl_rgm.sources import make_source
env, seed, powers = sys.argv[1], int(sys.argv[2]), [float(x) for x in sys.argv[3].split(",")]
extra = sys.argv[4:]
base = [f"env={env}", "dataset=medium_replay", f"seed={seed}"]
bc_cfg = config(base + ["algo=bc_expert", "budget.updates=24000"] + extra)
source = make_source(bc_cfg); data = source.load()
cfg = config(base + ["algo=rgm"])
algo = get_algorithm("rgm"); learner = algo.build(cfg, data, torch.device("cpu"))
algo.pretrain(cfg, learner, data, torch.Generator().manual_seed(seed), torch.device("cpu"))
prepared = algo.prepare_union(cfg, learner, data.union.to_tensordict(), torch.device("cpu"), expert=data.expert)
log_rho = prepared.get("log_density_ratio").reshape(-1).double()
expert = prepared.get("is_expert").reshape(-1).bool()
saved = torch.load(os.environ["WFILE"], weights_only=True) if os.environ.get("WFILE") else None
for power in powers:
    if saved is not None:
        w = saved[os.environ.get("WKEY", "w24")].double()
    else:
        w = ((log_rho - log_rho.max()) * power).exp() if power > 0 else expert.double()
    torch.manual_seed(seed)
    bl = get_algorithm("bc_expert").build(bc_cfg, data, torch.device("cpu"))
    buf = UnionReplayBuffer(prepared.select(*KEYS), data.initial_observation, bc_cfg.algo.batch_size, seed=seed)
    alt = os.environ.get("ALT")
    if alt:
        seq = [saved["w20"].double(), saved["w24"].double()]
        buf.set_extraction_weights(torch.ones_like(w))
    else:
        buf.set_extraction_weights(w)
    scores = []
    for i in range(1, 24001):
        if alt and i % 1000 == 1 and i > 1:
            buf.set_extraction_weights(seq[(i // 1000) % 2])
        bl.update(buf.sample()["extraction"])
        if i % 4000 == 0:
            r = source.evaluate(make_policy_fn(bl.actor, data.normalize_observation, "cpu"), data)
            scores.append(round(float(np.mean(data.normalized_score(r))), 1))
    print(json.dumps({"env": env, "seed": seed, "power": power, "expert_share": float(w[expert].sum()/w.sum()),
                      "scores": scores}), flush=True)
