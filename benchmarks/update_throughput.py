"""Updates/s of the full RGM update (discriminator frozen): naive vs package eager vs compiled;
then the baselines' updates (IQL, TD3+BC, BC, DWBC, SMODICE-style), eager and compiled.

Batch 512, MLPs 2x256, Hopper shapes (observation 11 + 1 absorbing flag, action 3).
All variants run in this one process, one after the other, on the same data;
the figure that matters is the ratio, since the machine is shared and noisy.

    python benchmarks/update_throughput.py [--steps 600] [--rounds 5] [--device cpu] [--json out.json]
    python benchmarks/update_throughput.py --no-baselines --vectorized 1 4 16 64   # + N runs in one step
    python benchmarks/update_throughput.py --device cuda --compile-mode reduce-overhead --no-baselines \
        --vectorized 1 8 32 64        # on a GPU: the target is >= 10x the single run's rate at N = 32

``default`` is the update a recipe runs when nothing is overridden (``compile`` and ``precision`` of
recipes/config/rgm_mujoco.yaml, resolved for this machine); ``speedup_vs_naive`` in the JSON is its ratio.
``--vectorized N`` adds groups of N runs stepped as one (:mod:`torchrl_rgm.vectorized`, eager and compiled):
their rate is run-updates/s (N updates per step), reported next to the single compiled run's.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from tensordict import TensorDict
from torch import nn

from torchrl_rgm.modules import (
    make_actor,
    make_discriminator,
    make_reward_correction_network,
    make_value_network,
)
from torchrl_rgm.objectives import RGMLoss
from torchrl_rgm.config import cpu_description
from torchrl_rgm.report import write_json
from torchrl_rgm.baselines import IQLUpdate, TD3BCUpdate, WeightedBCUpdate, make_qvalue_network
from torchrl_rgm.train import BCUpdate, RGMUpdate
from torchrl_rgm.vectorized import VectorizedRGMUpdate

OBS, ACT, BATCH, HIDDEN = 12, 3, 512, 256
GAMMA, ALPHA, RES_SCALE = 0.99, 0.5, 3.0


def make_data(n: int, device) -> TensorDict:
    g = torch.Generator().manual_seed(0)
    td = TensorDict(
        {
            "observation": torch.randn(n, OBS, generator=g),
            "action": torch.rand(n, ACT, generator=g) * 2 - 1,
            "initial_observation": torch.randn(n, OBS, generator=g),
            "next": {
                "observation": torch.randn(n, OBS, generator=g),
                "reward": torch.randn(n, 1, generator=g),
                "done": torch.rand(n, 1, generator=g) < 0.01,
            },
            "is_expert": torch.rand(n, 1, generator=g) < 0.01,
        },
        [n],
    )
    return td.to(device)


def mlp(i, o):
    return nn.Sequential(nn.Linear(i, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, o))


class NaiveRGM:
    """The paper's algorithm written the straightforward way (the benchmark's baseline)."""

    def __init__(self, device):
        self.value = mlp(OBS, 1).to(device)
        self.actor = nn.Sequential(mlp(OBS, ACT), nn.Tanh()).to(device)
        self.correction = mlp(OBS + ACT + 1, 1).to(device)
        self.discriminator = mlp(OBS + ACT, 1).to(device)
        self.opt_v = torch.optim.Adam(self.value.parameters(), lr=3e-4, weight_decay=1e-4)
        self.opt_pi = torch.optim.Adam(self.actor.parameters(), lr=3e-4)
        self.opt_r = torch.optim.Adam(self.correction.parameters(), lr=3e-7, weight_decay=1e-4)

    def delta_r(self, s, a, r):
        return RES_SCALE * torch.tanh(self.correction(torch.cat([s, a, r], -1)))

    def __call__(self, b):
        s, a, s0 = b["observation"], b["action"], b["initial_observation"]
        s2, r = b["next", "observation"], b["next", "reward"]
        not_done = 1.0 - b["next", "done"].float()
        with torch.no_grad():
            log_ratio = self.discriminator(torch.cat([s, a], -1))
            dr = self.delta_r(s, a, r)
        # value (lower level)
        v0, v, v2 = self.value(s0), self.value(s), self.value(s2)
        adv = (r + dr + GAMMA * not_done * v2 - v) / ALPHA
        loss_v = (1 - GAMMA) * v0.mean() + ALPHA * torch.exp(adv.clamp(max=10) - 1).mean()
        self.opt_v.zero_grad()
        loss_v.backward()
        self.opt_v.step()
        # reward correction (upper level), V held fixed
        with torch.no_grad():
            v, v2 = self.value(s), self.value(s2)
        adv = (r + self.delta_r(s, a, r) + GAMMA * not_done * v2 - v) / ALPHA
        w = torch.exp(adv.clamp(max=10) - 1)
        loss_r = (w * (adv.clamp(max=10) - 1 - log_ratio)).mean()
        self.opt_r.zero_grad()
        loss_r.backward()
        self.opt_r.step()
        # actor: weighted BC
        w = w.detach().clamp(max=100)
        w = w / w.sum()
        loss_pi = (w * (self.actor(s) - a).pow(2).sum(-1, keepdim=True)).sum()
        self.opt_pi.zero_grad()
        loss_pi.backward()
        self.opt_pi.step()
        return {"loss_value": loss_v.item(), "loss_reward_correction": loss_r.item(), "loss_actor": loss_pi.item()}


def package_update(device, compile: bool, autocast_dtype=None, compile_mode=None, seed=None) -> RGMUpdate:
    """The package's update. Networks are built on the CPU and moved, so that one ``seed`` gives
    the same initial weights on every device (``benchmarks/cuda_check.py`` compares them)."""
    if seed is not None:
        torch.manual_seed(seed)
    value = make_value_network(OBS).to(device)
    correction = make_reward_correction_network(OBS, ACT).to(device)
    actor = make_actor(OBS, ACT).to(device)
    rgm = RGMLoss(value, actor, correction, alpha=ALPHA, gamma=GAMMA, res_scale=RES_SCALE)
    return RGMUpdate(rgm, compile=compile, compile_mode=compile_mode, device=device,
                     autocast_dtype=autocast_dtype)


BASELINES = ("smodice", "dwbc", "bc", "iql", "td3bc")


def baseline_update(name: str, device, compile: bool):
    """A baseline's update as the recipe builds it (hopper shapes, deterministic actor unless IQL)."""
    actor = make_actor(OBS, ACT, stochastic=name == "iql", device=device)
    if name == "smodice":
        return RGMUpdate(RGMLoss(make_value_network(OBS, device=device), actor, None, alpha=1.0, gamma=GAMMA),
                         compile=compile, device=device)
    if name == "dwbc":
        return WeightedBCUpdate(actor, compile=compile)
    if name == "bc":
        return BCUpdate(actor, compile=compile)
    q = make_qvalue_network(OBS, ACT, device=device)
    if name == "iql":
        return IQLUpdate(actor, q, make_value_network(OBS, device=device), compile=compile)
    return TD3BCUpdate(actor, q, compile=compile)


def default_update(device):
    """The update a recipe runs with its defaults: the config's ``compile`` and ``precision`` on this device."""
    from omegaconf import OmegaConf

    from torchrl_rgm.config import resolve_precision

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "recipes" / "config" / "rgm_mujoco.yaml")
    precision = resolve_precision(cfg.precision, device)
    dtype = torch.bfloat16 if precision == "bfloat16" else None
    return package_update(device, compile=cfg.compile in ("auto", True), autocast_dtype=dtype), precision


class GroupStep:
    """``n`` package updates stepped as one vectorised group; called with one batch per run."""

    def __init__(self, n: int, device, compile: bool, compile_mode: str | None = None):
        self.group = VectorizedRGMUpdate([package_update(device, compile=False, seed=i) for i in range(n)],
                                         compile=compile, compile_mode=compile_mode)
        self.runs = n

    def __call__(self, batches):
        return self.group(batches)


def precompute_log_ratio(data: TensorDict, device) -> TensorDict:
    """The package's way: the frozen discriminator's log-ratio, once per transition."""
    disc = make_discriminator(OBS, ACT, device=device)
    with torch.no_grad():
        data["log_density_ratio"] = disc(data.select("observation", "action"))["discriminator_logit"]
    return data


def make_batches(data: TensorDict, device, count: int = 8, seed: int = 1) -> list[TensorDict]:
    g = torch.Generator(device=device).manual_seed(seed)
    return [data[torch.randint(data.shape[0], (BATCH,), generator=g, device=device)] for _ in range(count)]


def time_updates(step, batches, steps: int, device) -> float:
    """Updates/s over ``steps`` updates, with one host sync at the end."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        out = step(batches[i % len(batches)])
    if isinstance(out, TensorDict):
        next(iter(out.values())).sum().item()  # a training loop reads its metrics every N steps, not every step
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600, help="timed updates per variant, over all rounds")
    parser.add_argument("--warmup", type=int, default=20, help="untimed updates first (compilation happens here)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="write the results to this path")
    parser.add_argument("--no-baselines", action="store_true", help="time RGM's update only")
    parser.add_argument("--compile-mode", default=None,
                        help="torch.compile mode of the compiled variants (reduce-overhead: CUDA graphs on a GPU)")
    parser.add_argument("--vectorized", type=int, nargs="+", default=[], metavar="N",
                        help="also time groups of N runs stepped as one (aggregate run-updates/s)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1 or args.rounds < 1 or any(n < 1 for n in args.vectorized):
        parser.error("--steps, --warmup, --rounds and --vectorized must be ≥ 1")
    device = torch.device(args.device)
    # Several compiled updates of one class live in this process (RGM's three and SMODICE's share
    # RGMUpdate's code): each instance is a guard miss on `self`, so give Dynamo room for all of
    # them instead of letting it fall back to eager after 8 (a training run holds one update).
    torch._dynamo.config.recompile_limit = 64
    torch.manual_seed(0)
    data = make_data(100_000, device)

    data_with_ratio = precompute_log_ratio(data.clone(), device)
    default_step, default_precision = default_update(device)
    variants = {
        "naive": (NaiveRGM(device), make_batches(data, device)),
        "eager": (package_update(device, compile=False), make_batches(data_with_ratio, device)),
        "compiled": (package_update(device, compile=True, compile_mode=args.compile_mode),
                     make_batches(data_with_ratio, device)),
        "compiled_bf16": (
            package_update(device, compile=True, autocast_dtype=torch.bfloat16, compile_mode=args.compile_mode),
            make_batches(data_with_ratio, device),
        ),
        "default": (default_step, make_batches(data_with_ratio, device)),
    }
    runs_per_step = {name: 1 for name in variants}
    for n in args.vectorized:
        batches = [make_batches(data_with_ratio, device, seed=1 + i) for i in range(n)]
        for compiled in (False, True):
            name = f"vectorized{n}_{'compiled' if compiled else 'eager'}"
            variants[name] = (GroupStep(n, device, compiled, args.compile_mode), [list(b) for b in zip(*batches)])
            runs_per_step[name] = n
    if not args.no_baselines:
        for name in BASELINES:
            for compiled in (False, True):
                variants[f"{name}_{'compiled' if compiled else 'eager'}"] = (
                    baseline_update(name, device, compiled), make_batches(data_with_ratio, device))
    for step, batches in variants.values():  # warm-up; compilation happens here
        for i in range(args.warmup):
            step(batches[i % len(batches)])
    # Interleave the variants over several rounds so that a burst of load on the shared
    # machine hits them alike; report the median round of each.
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    per_round = max(1, args.steps // args.rounds)
    for _ in range(args.rounds):
        for name, (step, batches) in variants.items():
            n = runs_per_step[name]  # a group's step is n updates: as many updates timed, in fewer steps
            rounds[name].append(n * time_updates(step, batches, max(2, per_round // n), device))
    naive, eager, compiled, compiled_bf16, default = (
        statistics.median(rounds[k]) for k in ("naive", "eager", "compiled", "compiled_bf16", "default")
    )
    result = {
        "naive": naive,
        "eager": eager,
        "compiled": compiled,
        "compiled_bf16": compiled_bf16,
        "default": default,
        "default_precision": default_precision,
        # the path a user gets (recipes' defaults on this machine)
        "speedup_vs_naive": default / naive,
        "speedup_vs_naive_float32": max(eager, compiled) / naive,
        "speedup_vs_naive_bf16": compiled_bf16 / naive,
        "cpu": cpu_description(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch": BATCH,
        "steps": args.steps,
        "rounds": rounds,
    }
    print(f"\nRGM update throughput ({device}, {torch.get_num_threads()} threads, batch {BATCH}, MLP 2x{HIDDEN})")
    print(f"{'variant':<34}{'updates/s':>12}{'vs naive':>10}")
    labels = (
        ("naive", "naive reference"),
        ("eager", "package, eager"),
        ("compiled", "package, torch.compile"),
        ("compiled_bf16", "package, compile + bf16 autocast"),
        ("default", f"default path ({default_precision})"),
    )
    for name, label in labels:
        print(f"{label:<34}{result[name]:>12.1f}{result[name] / naive:>9.2f}x")
    if args.vectorized:
        result["vectorized"] = {}
        print(f"\nN runs in one step (run-updates/s, float32; vs one compiled run: {compiled:.1f} updates/s)")
        print(f"{'N':>4}{'eager':>10}{'compiled':>10}{'best vs single':>16}")
        for n in args.vectorized:
            e, c = (statistics.median(rounds[f"vectorized{n}_{k}"]) for k in ("eager", "compiled"))
            result["vectorized"][n] = {"eager": e, "compiled": c, "vs_single_compiled": max(e, c) / compiled}
            print(f"{n:>4}{e:>10.1f}{c:>10.1f}{max(e, c) / compiled:>15.2f}x")
    if not args.no_baselines:
        result["baselines"] = {k: statistics.median(v) for k, v in rounds.items() if k.split("_")[0] in BASELINES}
        print(f"\nBaselines, same batch and MLPs ({device}, {torch.get_num_threads()} threads)")
        print(f"{'algorithm':<12}{'eager':>10}{'compiled':>10}{'vs RGM compiled':>17}")
        for name in BASELINES:
            e, c = result["baselines"][f"{name}_eager"], result["baselines"][f"{name}_compiled"]
            print(f"{name:<12}{e:>10.1f}{c:>10.1f}{max(e, c) / compiled:>16.2f}x")
    if args.json:
        write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
