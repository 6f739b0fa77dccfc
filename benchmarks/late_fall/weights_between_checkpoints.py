"""Exploratory (docs/results.md, "Where the late fall comes from"): w of a finished RGM run at its last two
checkpoints, how much it moved, and the weights saved to <run>.w.pt.  python benchmarks/late_fall/weights_between_checkpoints.py <run dir>"""
import sys, torch
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from omegaconf import OmegaConf
from torchrl_rgm.algorithms import get_algorithm
from torchrl_rgm.diagnostics import transition_diagnostics
from torchrl_rgm.sources import make_source
torch.set_num_threads(2)
run_dir = Path(sys.argv[1])
cfg = OmegaConf.load(run_dir / "config.yaml")
algorithm = get_algorithm(cfg.algo.name)
data = make_source(cfg).load()
ws = []
for ck in ("checkpoint.prev.pt", "checkpoint.pt"):
    learner = algorithm.build(cfg, data, "cpu")
    learner.load_networks(torch.load(run_dir / ck, weights_only=True))
    union = algorithm.prepare_union(cfg, learner, data.union.to_tensordict(), "cpu", expert=data.expert.to_tensordict())
    ws.append(transition_diagnostics(learner.losses["rgm_loss"], union, data.initial_observation, "cpu")["visitation_weight"].reshape(-1))
rho = union.get("log_density_ratio").exp().reshape(-1)
e = union.get("is_expert").reshape(-1).bool(); st = union.get("step").reshape(-1)
lw0, lw1, lr = ws[0].clamp(min=1e-12).log(), ws[1].clamp(min=1e-12).log(), rho.log()
def corr(a, b): a = a - a.mean(); b = b - b.mean(); return float((a*b).sum()/(a.norm()*b.norm()))
print("corr log w(20k), log w(24k) expert", corr(lw0[e], lw1[e]), " all", corr(lw0, lw1))
print("corr log w vs log rho expert", corr(lw1[e], lr[e]), corr(lw0[e], lr[e]))
print("std log(w/rho) expert", float((lw1[e]-lr[e]).std()), "std log(w24/w20) expert", float((lw1[e]-lw0[e]).std()))
for s in range(4):
    m = st == s
    print(s, "expert/other w20", float(ws[0][m&e].sum()), float(ws[0][m&~e].sum()), "w24", float(ws[1][m&e].sum()), float(ws[1][m&~e].sum()))
torch.save({"w20": ws[0], "w24": ws[1]}, run_dir.name + ".w.pt")  # keys: the previous and the last checkpoint
