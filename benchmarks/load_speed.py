"""How fast datasets load: first load (Minari → memory-mapped cache) and the cached second load.

    python benchmarks/load_speed.py                       # 1M transitions, Hopper shapes
    python benchmarks/load_speed.py --transitions 200000 --json benchmarks/results/load_speed.json

The dataset is written with ``minari.create_dataset_from_buffers`` into a temporary Minari
directory (random values with Hopper's shapes: loading speed does not depend on the values) and
loaded with :func:`torchrl_rgm.data.load_transitions` and :func:`torchrl_rgm.data.load_rgm_data`
(expert = the same id, negated reward, absorbing states, z-scoring). Target: the second load of a
1M-transition dataset in ≤ 2 s. Prints a table and writes JSON (atomically).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_episodes(transitions: int, episode_length: int, seed: int = 0):
    from minari.data_collector import EpisodeBuffer

    from torchrl_rgm.generation.build import INFO_KEYS

    rng = np.random.default_rng(seed)
    episodes, left, i = [], transitions, 0
    while left > 0:
        T = min(episode_length, left)
        terminal = i % 2 == 0 and T < episode_length or i % 3 == 0  # some terminals, some timeouts
        episodes.append(EpisodeBuffer(
            id=i, seed=i, observations=list(rng.standard_normal((T + 1, 11)).astype(np.float64)),
            actions=list(rng.uniform(-1, 1, (T, 3)).astype(np.float32)), rewards=list(rng.standard_normal(T)),
            terminations=[False] * (T - 1) + [bool(terminal)], truncations=[False] * (T - 1) + [not terminal],
            infos={k: rng.standard_normal(T + 1) for k in INFO_KEYS},
        ))
        left -= T
        i += 1
    return episodes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--episode-length", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINARI_DATASETS_PATH"] = str(Path(tmp) / "minari")
        os.environ["TORCHRL_RGM_CACHE"] = str(Path(tmp) / "cache")
        from torchrl_rgm.data import load_rgm_data, load_transitions
        from torchrl_rgm.generation.build import write_dataset

        ds_id = "rgm/hopper/loadbench-v0"
        t = time.perf_counter()
        write_dataset(ds_id, make_episodes(args.transitions, args.episode_length), "hopper", 0.0, 1.0,
                      "load-speed benchmark", overwrite=False)
        rows = [("write the Minari dataset", time.perf_counter() - t)]
        for what, fn in (
            ("load_transitions, first (convert + cache)", lambda: load_transitions(ds_id)),
            ("load_transitions, second (cached)", lambda: load_transitions(ds_id)),
            ("load_rgm_data, first (process + cache)", lambda: load_rgm_data(ds_id, reward="negated")),
            ("load_rgm_data, second (cached)", lambda: load_rgm_data(ds_id, reward="negated")),
        ):
            t = time.perf_counter()
            out = fn()
            rows.append((what, time.perf_counter() - t))
        n = out.union.shape[0]

    print(f"{args.transitions} transitions ({n} in the processed union with absorbing states)")
    print("| step | seconds |\n|---|---:|")
    for what, s in rows:
        print(f"| {what} | {s:.2f} |")
    result = {"transitions": args.transitions, "seconds": {w: s for w, s in rows}}
    if args.json is not None:
        from torchrl_rgm.report import write_json

        write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
