"""The imperfect-reward study: env × dataset × reward setting × algorithm × seed, run as Ray tasks.

    python benchmarks/imperfect_rewards.py --quick              # hopper + walker2d, ~2 h on 2 cores
    python benchmarks/imperfect_rewards.py --full --address auto   # the paper-sized grid on a Ray cluster
    python benchmarks/imperfect_rewards.py --quick --report-only   # table and plot from the CSV

Every run is ``recipes/rgm_mujoco.py`` in a subprocess (its own process, its share of threads),
so a crash is one failed row, not a dead grid. One row per run lands in the CSV as soon as the
run ends (atomic rewrite): an interrupted grid resumes, skipping the rows present (``--retry-failed``
re-runs the failed ones) and continuing half-done runs from their last checkpoint. Algorithms that
ignore the reward (bc, smodice, dwbc) run once per env and dataset (reward column ``any``).

Outputs: the CSV, ``<csv stem>.md`` (mean ± 95% bootstrap CI per cell, IQM over tasks per reward
setting, the targets), ``<csv stem>.png`` and ``<csv stem>.spec.json`` (the settings the rows were
produced with; resuming with other settings is refused).
"""
from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import run_recipe, run_recipe_group  # noqa: E402
from torchrl_rgm.algorithms import ALGORITHMS  # noqa: E402

def _variant(*settings: dict) -> list[str]:
    """Recipe overrides from ``key: value`` dicts, later ones winning (Hydra refuses a key given twice)."""
    merged = {}
    for d in settings:
        merged.update(d)
    return [f"{k}={v}" for k, v in merged.items()]


#: RGM as the paper sets it (and as ``algo=rgm`` was before it defaulted to the anchored correction): Δr centred
#: at 0 from a random start, the discriminator with gradient penalty 10 and its raw logit, the update's batch weighted.
BOUNDED = {"algo.correction_anchor": "false", "algo.correction_zero_init": "false", "algo.gradient_penalty": 10,
           "algo.density_ratio_temperature": 1.0, "algo.extraction_sampling": "uniform", "algo.weight_clip": 100}
CALIBRATED = {"algo.density_ratio_temperature": "auto", "data.terminal_absorbing_loop": "false"}
#: Named configurations of a registered algorithm the grid can run beside it: ``name -> (algorithm, overrides)``.
#: ``rgm_bounded``: the paper's RGM (:data:`BOUNDED`). ``rgm_calibrated``: that with the discriminator's temperature
#: fitted by maximum likelihood and an absorbing state that lasts (docs/results.md, "Why RGM's weights miss the
#: expert"). ``rgm_sharp``: the same with the discriminator trained without its gradient penalty (whose smoothing caps
#: BC on rows drawn by ``ρ`` at 6-11 on hopper: benchmarks/ratio_ceiling.py); ``smodice_sharp``: SMODICE with that
#: discriminator and weighted extraction sampling. ``rgm_clip100``: the default with its extraction weights clipped at
#: 100 (the default until the weights drawn in proportion to w went unclipped). ``rgm_det``, ``bc_expert_det``: with a
#: deterministic actor where the env's default is the tanh-Gaussian (halfcheetah, walker2d: the paper's choice), which
#: fits ~1,000 expert rows worse; ``rgm_det_avg``: that and the averaged extraction target together. ``rgm`` itself
#: is the recipe's default.
ALGO_VARIANTS = {
    "rgm_bounded": ("rgm", _variant(BOUNDED)),
    "rgm_calibrated": ("rgm", _variant(BOUNDED, CALIBRATED)),
    "rgm_sharp": ("rgm", _variant(BOUNDED, CALIBRATED, {"algo.gradient_penalty": 0})),
    "rgm_clip100": ("rgm", _variant({"algo.weight_clip": 100})),
    "rgm_det": ("rgm", ["algo.actor=deterministic"]),
    "rgm_union_s0": ("rgm", ["algo.initial_states=union"]),
    "rgm_expert_s0": ("rgm", ["algo.initial_states=expert"]),
    "rgm_avg": ("rgm", ["algo.extraction_average=true"]),
    "rgm_latest": ("rgm", ["algo.extraction_average=false"]),
    "rgm_det_avg": ("rgm", ["algo.actor=deterministic", "algo.extraction_average=true"]),
    "bc_expert_det": ("bc_expert", ["algo.actor=deterministic"]),
    "smodice_sharp": ("smodice", ["algo.density_ratio_temperature=auto", "algo.gradient_penalty=0",
                                  "algo.extraction_sampling=weighted"]),
}
#: The single-task algorithms the grid compares (the registry's, less the data-sharing variants, and the variants).
#: The deciding grid's six (the quick, paper-protocol and full presets).
DECIDING_ALGOS = ("rgm", "smodice", "dwbc", "bc", "iql", "td3bc")
ALGOS = ("rgm", "rgm_clip100", "rgm_det", "rgm_union_s0", "rgm_expert_s0", "rgm_avg", "rgm_latest", "rgm_det_avg", "rgm_bounded", "rgm_calibrated", "rgm_sharp", "smodice", "smodice_sharp", "dwbc", "bc", "bc_expert", "bc_expert_det", "iql",
         "td3bc", "seabo_iql", "seabo_td3bc", "otr_iql")


def base_algo(name: str) -> str:
    """The registered algorithm a grid algorithm runs (itself, or a variant's)."""
    return ALGO_VARIANTS[name][0] if name in ALGO_VARIANTS else name


#: Those that ignore the dataset's reward: one run per environment and dataset suffices.
REWARD_AGNOSTIC = tuple(a for a in ALGOS if not ALGORITHMS[base_algo(a)].reads_reward)
from torchrl_rgm.report import save_figure, write_json  # noqa: E402

COLUMNS = ["env", "dataset", "reward", "algo", "seed", "final_score", "best_score", "wall_s", "status", "error"]
KEY = ("env", "dataset", "reward", "algo", "seed")
ENVS = ("hopper", "walker2d", "halfcheetah")
DATASETS = ("random", "medium", "medium-replay", "medium-expert")
#: ``partial25``: the paper's sign flips at p = 0.25 (E[r~] = r / 2; at the paper's p = 0.5 the reward's mean is 0).
REWARDS = ("true", "partial", "partial25", "negated", "zero", "sparse", "noisy", "other_task")
ANY = "any"  # reward column of the algorithms that ignore the reward

GRIDS = {
    # ~2 h on this 2-core machine (2 runs at a time, one thread each); budgets in docs/results.md.
    "quick": dict(envs=["hopper", "walker2d"], datasets=["medium-replay"], rewards=["true", "negated", "partial", "zero"],
                  algos=list(DECIDING_ALGOS), seeds=3, updates=8000, eval_every=4000, eval_episodes=10,
                  discriminator_steps=1000, skip=[["iql", "zero"], ["td3bc", "zero"]]),
    # The deciding grid (docs/results.md, "When the correction pays"): the authors' protocol (protocol=paper: D = D^O, Δr at
    # 0 with their absolute learning rate, done = 1 on terminals) on D4RL-style medium-replay, 3x the quick budget.
    "paper_protocol": dict(envs=["hopper", "halfcheetah", "walker2d"], datasets=["medium-replay"],
                           rewards=["true", "partial", "zero", "negated"], algos=list(DECIDING_ALGOS), seeds=3, updates=24000,
                           eval_every=4000, eval_episodes=10, discriminator_steps=1000,
                           skip=[["iql", "zero"], ["td3bc", "zero"]], overrides=["protocol=paper"]),
    # The paper's MuJoCo grid (1M updates, 5 seeds): for a cluster (--address).
    # RGM against what a user tries first with one expert trajectory (docs/results.md, "Which method when"): the default
    # protocol (D = D^O ∪ D^E, so every method holds the trajectory), BC on it alone, rewards labelled from it
    # (SEABO, OTR) for offline RL, the deciding grid's budget.
    "expert_baselines": dict(envs=["hopper", "halfcheetah", "walker2d"], datasets=["medium-replay"],
                             rewards=["true", "negated", "partial25", "partial", "zero"],
                             algos=["rgm", "rgm_clip100", "rgm_det", "rgm_bounded", "rgm_calibrated", "rgm_sharp", "smodice_sharp", "bc", "bc_expert", "bc_expert_det", "iql", "td3bc", "seabo_iql", "otr_iql"],
                             seeds=3, updates=24000, eval_every=4000, eval_episodes=10, discriminator_steps=1000,
                             skip=[["iql", "zero"], ["td3bc", "zero"]]),
    "full": dict(envs=list(ENVS), datasets=list(DATASETS), rewards=list(REWARDS), algos=list(DECIDING_ALGOS), seeds=5,
                 updates=1_000_000, eval_every=5000, eval_episodes=10, discriminator_steps=2000),
}


class GridError(ValueError):
    pass


@dataclass(frozen=True)
class Cell:
    env: str
    dataset: str
    reward: str
    algo: str
    seed: int

    @property
    def key(self) -> tuple:
        return (self.env, self.dataset, self.reward, self.algo, str(self.seed))

    @property
    def name(self) -> str:
        return f"{self.env}-{self.dataset}-{self.reward}-{self.algo}-s{self.seed}"


def _check(kind: str, values, valid) -> None:
    bad = [v for v in values if v not in valid]
    if bad:
        raise GridError(f"Unknown {kind} {bad}; valid {kind}s are {sorted(valid)}.")
    if not values:
        raise GridError(f"The grid has no {kind}; give at least one of {sorted(valid)}.")


def make_cells(envs, datasets, rewards, algos, seeds: int, skip=()) -> list[Cell]:
    """Every run of the grid; unknown names fail here, before anything runs, listing the valid ones.

    ``skip``: ``(algo, reward)`` pairs left out. The quick grid skips IQL and TD3+BC on the zero
    reward: TD learning on an all-zero reward learns ``Q ≡ 0``, so IQL's weights are all 1 and
    TD3+BC's Q term vanishes: both are then BC on the union, which the grid already runs.
    """
    _check("env", envs, ENVS)
    _check("dataset", datasets, DATASETS)
    _check("reward", rewards, REWARDS)
    _check("algo", algos, ALGOS)
    if seeds < 1:
        raise GridError(f"seeds must be ≥ 1, got {seeds}.")
    skip = {tuple(pair) for pair in skip}
    cells = []
    for env in envs:
        for dataset in datasets:
            for algo in algos:
                for reward in ([ANY] if algo in REWARD_AGNOSTIC else rewards):
                    if (algo, reward) in skip:
                        continue
                    cells.extend(Cell(env, dataset, reward, algo, s) for s in range(seeds))
    return cells


# Within a seed, the runs the deciding targets compare come first (docs/results.md, "When does the correction pay?").
_ALGO_ORDER = ("rgm", "smodice", "dwbc", "td3bc", "iql", "bc")
_REWARD_ORDER = ("partial", "zero", "true", "negated", "partial25")


def run_order(cell: Cell) -> tuple:
    """Seed-major order, so an interrupted grid has whole seeds rather than all seeds of a few cells; within a
    seed, the comparisons the targets need first (RGM on each reward, SMODICE, DWBC, then the offline-RL
    baselines), each across every env before the next."""
    def rank(value, order):
        return order.index(value) if value in order else len(order)

    return (cell.seed, rank(cell.algo, _ALGO_ORDER), rank(cell.reward, _REWARD_ORDER), cell.algo, cell.reward,
            cell.env, cell.dataset)


def recipe_overrides(cell: Cell, spec: dict) -> list[str]:
    reward = "true" if cell.reward == ANY else cell.reward  # ignored by these algorithms
    return [
        f"env={cell.env}", f"dataset={cell.dataset.replace('-', '_')}",
        f"reward={'true_reward' if reward == 'true' else reward}", f"algo={base_algo(cell.algo)}", f"seed={cell.seed}",
        f"budget.updates={spec['updates']}", f"eval.every={spec['eval_every']}",
        f"eval.episodes={spec['eval_episodes']}", f"checkpoint_every={spec['eval_every']}",
        f"budget.discriminator_steps={spec['discriminator_steps']}", *spec.get("overrides", []),
        *ALGO_VARIANTS.get(cell.algo, ("", []))[1],
    ]


def run_cell(cell: Cell, spec: dict, out_dir: str, threads: int, root: str | None = None,
             timeout: float | None = None) -> dict:
    """One run of the recipe in a subprocess; returns its CSV row (never raises for a failed run)."""
    root = Path(root or os.getcwd())
    summary, error, wall = run_recipe(root / "recipes" / "rgm_mujoco.py", recipe_overrides(cell, spec),
                                      Path(out_dir) / cell.name, threads, root, timeout)
    return _row(cell, summary, error, wall)


#: The algorithms whose runs can be trained together (``seeds=[...]``, one vectorised update).
VECTORIZABLE = ("rgm", "smodice")


def _row(cell: Cell, summary: dict | None, error: str, wall: float | None) -> dict:
    row = {**asdict(cell), "final_score": "", "best_score": "", "wall_s": "", "status": "failed", "error": ""}
    if summary is None:
        row.update(error=error, wall_s=f"{wall:.1f}" if wall is not None else "")
        return row
    row.update(final_score=f"{summary['final_normalized_score']:.3f}",
               best_score=f"{summary['best_normalized_score']:.3f}",
               wall_s=f"{wall if wall is not None else summary['wall_time_s']:.1f}", status="ok")
    return row


def pack_cells(cells: list[Cell], runs_per_process: int) -> list[list[Cell]]:
    """Cells in groups trained in one process: up to ``runs_per_process`` seeds of one configuration of a
    vectorizable algorithm; every other cell alone. The order of ``cells`` is kept (a group where its first seed is)."""
    if runs_per_process <= 1:
        return [[c] for c in cells]
    groups, open_groups = [], {}
    for c in cells:
        if base_algo(c.algo) not in VECTORIZABLE:
            groups.append([c])
            continue
        key = (c.env, c.dataset, c.reward, c.algo)
        group = open_groups.get(key)
        if group is None or len(group) >= runs_per_process:
            group = open_groups[key] = []
            groups.append(group)
        group.append(c)
    return groups


def run_cells(cells: list[Cell], spec: dict, out_dir: str, threads: int, root: str | None = None,
              timeout: float | None = None) -> list[dict]:
    """Several seeds of one configuration in one process (the recipe's ``seeds=[...]``); their CSV rows."""
    if len(cells) == 1:
        return [run_cell(cells[0], spec, out_dir, threads, root, timeout)]
    root = Path(root or os.getcwd())
    args = [a for a in recipe_overrides(cells[0], spec) if not a.startswith("seed=")]
    pattern = str(Path(out_dir) / cells[0].name[: -len(f"s{cells[0].seed}")]) + "s{seed}"
    results = run_recipe_group(root / "recipes" / "rgm_mujoco.py", args, pattern, [c.seed for c in cells], threads,
                               root, timeout)
    return [_row(c, *results[c.seed]) for c in cells]


# ------------------------------------------------------------------------------------------------
# CSV (atomic rewrite after every run) and the grid's spec
# ------------------------------------------------------------------------------------------------


def read_rows(path: Path, columns=COLUMNS) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and set(rows[0]) != set(columns):
        raise GridError(f"{path} has columns {list(rows[0])}, expected {columns}: not this benchmark's CSV.")
    return rows


def write_rows(path: Path, rows: list[dict], columns=COLUMNS, sort_key=None) -> None:
    """The whole CSV, rewritten atomically (temp file + rename), rows sorted by ``sort_key`` (default: KEY)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(sorted(rows, key=sort_key or (lambda r: tuple(r[k] for k in KEY))))
    tmp.replace(path)


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def check_spec(path: Path, spec: dict, rows: list[dict]) -> None:
    """Rows already in the CSV must come from the same budget and overrides as the runs to add."""
    budget = {k: spec[k] for k in ("updates", "eval_every", "eval_episodes", "discriminator_steps", "overrides")}
    if path.exists() and rows:
        old = json.loads(path.read_text())
        if old != budget:
            raise GridError(f"{path} says the CSV's rows were produced with {old}, but this grid uses {budget}: "
                            "pass the same settings to resume, or another --csv.")
    write_json(budget, path)


# ------------------------------------------------------------------------------------------------
# Statistics: mean ± 95% percentile bootstrap CI per cell; IQM over tasks with a stratified bootstrap
# ------------------------------------------------------------------------------------------------


def iqm(x, axis=None):
    """Interquartile mean: the mean of the middle 50% (scipy's ``trim_mean(x, 0.25)``, as rliable) of ``x``, or of
    each slice along ``axis``."""
    from scipy.stats import trim_mean

    x = np.asarray(x, dtype=float)
    return float(trim_mean(x.ravel(), 0.25)) if axis is None else trim_mean(x, 0.25, axis=axis)


def bootstrap_ci(groups: list, statistic, n: int = 5000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of ``statistic(concatenated groups)``, resampling runs within each group (stratified).

    With one group this is the ordinary percentile bootstrap of ``statistic``. The resamples are drawn first (in
    the same order as one draw per group per resample) and, when ``statistic`` takes ``axis`` (``np.mean``,
    :func:`iqm`), evaluated in one call over all of them.
    """
    rng = np.random.default_rng(seed)
    groups = [np.asarray(g, dtype=float) for g in groups]
    offsets = np.cumsum([0] + [len(g) for g in groups[:-1]])
    idx = np.empty((n, sum(len(g) for g in groups)), dtype=np.int64)
    for i in range(n):
        idx[i] = np.concatenate([off + rng.integers(0, len(g), len(g)) for off, g in zip(offsets, groups)])
    samples = np.concatenate(groups)[idx]
    try:
        stats = np.asarray(statistic(samples, axis=1), dtype=float)
    except TypeError:  # a statistic of one 1-D sample only
        stats = np.array([statistic(row) for row in samples], dtype=float)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _scores(rows, **match) -> np.ndarray:
    return np.array([float(r["final_score"]) for r in rows if r["status"] == "ok"
                     and all(r[k] == v for k, v in match.items())])


def _fmt(x: np.ndarray, count: bool = False) -> str:
    """mean [95% CI]; ``count``: with the number of seeds behind it (a grid still running has uneven cells)."""
    if len(x) == 0:
        return "–"
    lo, hi = bootstrap_ci([x], np.mean)
    return f"{x.mean():.1f} [{lo:.1f}, {hi:.1f}]" + (f" ({len(x)})" if count else "")


def _reward_settings(ok: list[dict]) -> list[str]:
    """The reward settings of the table's rows; ``any`` alone if only reward-agnostic algorithms ran."""
    return [w for w in REWARDS if any(r["reward"] == w for r in ok)] or ([ANY] if ok else [])


def summarise(rows: list[dict]) -> dict:
    """Per reward setting and algorithm: scores grouped by task (env, dataset), for IQM and targets."""
    ok = [r for r in rows if r["status"] == "ok"]
    tasks = sorted({(r["env"], r["dataset"]) for r in ok})
    rewards = _reward_settings(ok)
    algos = [a for a in ALGOS if any(r["algo"] == a for r in ok)]
    out = {}
    for reward in rewards:
        for algo in algos:
            col = ANY if algo in REWARD_AGNOSTIC else reward
            groups = [g for g in (_scores(ok, env=e, dataset=d, reward=col, algo=algo) for e, d in tasks) if len(g)]
            if groups:
                allx = np.concatenate(groups)
                out[(reward, algo)] = dict(groups=groups, mean=float(allx.mean()), iqm=iqm(allx),
                                           iqm_ci=bootstrap_ci(groups, iqm), n=len(allx))
    return out


# (baseline, required margin, strict): RGM − baseline must be ≥ margin (> margin if strict).
TARGETS = (("iql", 10.0, False), ("td3bc", 10.0, False), ("bc", 0.0, True), ("smodice", 0.0, False))


def target_lines(summary: dict) -> list[str]:
    """The issue's targets: RGM (negated, partial) − baseline, mean over tasks and seeds."""
    lines = []
    for reward in ("negated", "partial"):
        if (reward, "rgm") not in summary:
            continue
        rgm = summary[(reward, "rgm")]["mean"]
        for algo, margin, strict in TARGETS:
            if (reward, algo) in summary:
                gap = rgm - summary[(reward, algo)]["mean"]
                met = gap > margin if strict else gap >= margin
                need = f"{'>' if strict else '≥'} {margin:+.0f}"
                lines.append(f"| {reward} | rgm − {algo} | {gap:+.1f} | {need} | {'met' if met else 'missed'} |")
    return lines


def expert_target_lines(rows: list[dict]) -> list[str]:
    """The expert-baselines targets (issue 28), where the grid has their runs: RGM ≥ BC(D^E) − 5 per task and reward
    (the stronger of ``bc_expert`` and ``bc_expert_det``);
    RGM(true), RGM(partial25) ≥ max(seabo_iql, otr_iql) + 5 on the mean over tasks; RGM(negated) ≥
    max(iql, td3bc)(negated) + 10 per task. Each gap over the seeds both sides have."""
    def task_means(reward, algo):
        return {t: v for t, v in _per_task(rows, reward, algo).items()}

    def paired(a, b, task):
        seeds = set(a.get(task, {})) & set(b.get(task, {}))
        return (float(np.mean([a[task][s] for s in seeds]) - np.mean([b[task][s] for s in seeds])), len(seeds)) \
            if seeds else None

    def row(label, gap, margin, seeds):
        return f"| {label} | {gap:+.1f} | {seeds} | ≥ {margin:+.0f} | {'met' if gap >= margin else 'missed'} |"

    lines = []
    rewards = [w for w in REWARDS if any(r["reward"] == w and r["algo"] == "rgm" for r in rows)]
    bcs = {name: task_means(ANY, name) for name in ("bc_expert", "bc_expert_det")}
    for reward in rewards:
        rgm = task_means(reward, "rgm")
        for task in sorted(rgm):
            found = {name: paired(rgm, bc, task) for name, bc in bcs.items()}
            found = {name: g for name, g in found.items() if g is not None}
            if found:  # against the stronger BC on the expert (the smaller gap)
                name = min(found, key=lambda k: found[k][0])
                lines.append(row(f"{task[0]} {reward}: rgm − {name}", found[name][0], -5, found[name][1]))
    for reward in ("true", "partial25"):
        each = [g for g in (_common_task_gap(rows, (reward, "rgm"), (reward, o)) for o in ("seabo_iql", "otr_iql"))
                if g is not None]
        if each:
            g, n = min(each)
            lines.append(row(f"mean over {n} task{'s' if n != 1 else ''}, {reward}: rgm − max(seabo_iql, otr_iql)",
                             g, 5, "–"))
    rgm = task_means("negated", "rgm")
    for task in sorted(rgm):
        each = [g for g in (paired(rgm, task_means("negated", o), task) for o in ("iql", "td3bc")) if g is not None]
        if each:
            g, n = min(each)
            lines.append(row(f"{task[0]} negated: rgm − max(iql, td3bc)", g, 10, n))
    return lines


def which_method_lines(rows: list[dict], min_seeds: int = 2) -> list[str]:
    """"Which method when" (issue 28 #4): per task and reward RGM ran with, the algorithm with the highest mean final
    score among those with ``min_seeds`` or more runs there (reward-agnostic ones count in every reward row), its mean
    [95% bootstrap CI], its seeds, and RGM's mean and gap to it. Rows: ``| env | reward | best | score | seeds | rgm |``."""
    ok = [r for r in rows if r["status"] == "ok"]
    algos = [a for a in ALGOS if any(r["algo"] == a for r in ok)]
    lines = []
    for env, dataset in sorted({(r["env"], r["dataset"]) for r in ok}):
        for reward in (w for w in REWARDS if any(r["algo"] == "rgm" and r["reward"] == w and r["env"] == env
                                                 and r["dataset"] == dataset for r in ok)):
            each = {a: _scores(ok, env=env, dataset=dataset, reward=ANY if a in REWARD_AGNOSTIC else reward, algo=a)
                    for a in algos}
            each = {a: x for a, x in each.items() if len(x) >= min_seeds}
            if "rgm" not in each:
                continue
            best = max(each, key=lambda a: each[a].mean())
            x, rgm = each[best], each["rgm"]
            mine = "best" if best == "rgm" else f"{rgm.mean():.1f} ({rgm.mean() - x.mean():+.1f})"
            lines.append(f"| {env} | {reward} | `{best}` | {_fmt(x)} | {len(x)} | {mine} |")
    return lines


def _per_task(rows: list[dict], reward: str, algo: str) -> dict:
    """``{(env, dataset): {seed: final score}}`` of one algorithm's ok runs with one reward."""
    col = ANY if algo in REWARD_AGNOSTIC else reward
    found: dict = {}
    for r in rows:
        if r["status"] == "ok" and r["algo"] == algo and r["reward"] == col:
            found.setdefault((r["env"], r["dataset"]), {})[r["seed"]] = float(r["final_score"])
    return found


def _common_task_gap(rows: list[dict], a: tuple, b: tuple) -> tuple[float, int] | None:
    """Mean of ``a`` minus mean of ``b`` (each ``(reward, algo)``) over the tasks, and within each task the seeds,
    both have runs of, and how many tasks that is: an interrupted grid then compares like with like."""
    sa, sb = _per_task(rows, *a), _per_task(rows, *b)
    gaps = []
    for task in sorted(set(sa) & set(sb)):
        seeds = set(sa[task]) & set(sb[task])
        if seeds:
            gaps.append((np.mean([sa[task][s] for s in seeds]), np.mean([sb[task][s] for s in seeds])))
    if not gaps:
        return None
    return float(np.mean([g[0] for g in gaps]) - np.mean([g[1] for g in gaps])), len(gaps)


def _best_per_seed_gap(rows: list[dict], reward: str, others: tuple) -> tuple[float, int, int] | None:
    """RGM minus the best of ``others`` *per task and seed* (a harsher reading than the stronger algorithm's mean),
    averaged over the seeds of a task and then over tasks, using only the (task, seed) pairs every side has; with the
    number of tasks and of pairs."""
    rgm = _per_task(rows, reward, "rgm")
    base = [_per_task(rows, reward, o) for o in others]
    per_task = []
    pairs = 0
    for task in sorted(rgm):
        seeds = set(rgm[task]).intersection(*(set(b.get(task, {})) for b in base))
        if seeds:
            per_task.append(np.mean([rgm[task][s] - max(b[task][s] for b in base) for s in seeds]))
            pairs += len(seeds)
    if not per_task:
        return None
    return float(np.mean(per_task)), len(per_task), pairs


def decision_lines(summary: dict, rows: list[dict] | None = None) -> list[str]:
    """The deciding grid's targets (docs/results.md, "When the correction pays"), mean over tasks and seeds; with ``rows``,
    each gap over the tasks and seeds both sides have runs of (the number of tasks is printed)."""
    def mean(reward, algo):
        return summary[(reward, algo)]["mean"] if (reward, algo) in summary else None

    lines = []

    def add(label, gap, margin, tasks=None):
        if gap is not None:
            where = f" ({tasks} task{'s' if tasks != 1 else ''})" if tasks is not None else ""
            lines.append(f"| {label}{where} | {gap:+.1f} | ≥ {margin:+.0f} | {'met' if gap >= margin else 'missed'} |")

    def gap(a, b):
        if rows is not None:
            found = _common_task_gap(rows, a, b)
            return (None, None) if found is None else found
        ma, mb = mean(*a), mean(*b)
        return (None if ma is None or mb is None else ma - mb), None

    for label, a, b, margin in (("rgm(true) − rgm(zero): the reward is used", ("true", "rgm"), ("zero", "rgm"), 5),
                                ("rgm(partial) − smodice", ("partial", "rgm"), ("partial", "smodice"), 5),
                                ("rgm(partial) − dwbc", ("partial", "rgm"), ("partial", "dwbc"), 0)):
        g, n = gap(a, b)
        add(label, g, margin, n)
    offline_rl = ("iql", "td3bc")
    for reward in ("partial", "negated"):
        each = {o: gap((reward, "rgm"), (reward, o)) for o in offline_rl}
        found = [x for x in each.values() if x[0] is not None]
        if not found:
            continue
        g, n = min(found)  # the stronger offline-RL baseline: the smaller gap
        add(f"rgm({reward}) − max(iql, td3bc)({reward})", g, 10, n)
        if rows is None:
            continue
        for o, (go, no) in each.items():  # each baseline's own gap, which the max line keeps only one of
            if go is not None:
                lines.append(f"| … rgm({reward}) − {o} ({no} task{'s' if no != 1 else ''}) | {go:+.1f} | | |")
        harsh = _best_per_seed_gap(rows, reward, offline_rl)
        if harsh is not None:
            gh, nt, pairs = harsh
            where = f"{nt} task{'s' if nt != 1 else ''}, {pairs} task-seed pair{'s' if pairs != 1 else ''}"
            lines.append(f"| … rgm({reward}) − the better of iql, td3bc per task and seed ({where}) | {gh:+.1f} | "
                         f"≥ +10 | {'met' if gh >= 10 else 'missed'} |")
    return lines


def markdown(rows: list[dict], spec: dict) -> str:
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    algos = [a for a in ALGOS if any(r["algo"] == a for r in ok)]
    tasks = sorted({(r["env"], r["dataset"]) for r in ok})
    rewards = _reward_settings(ok)
    out = [
        "# Imperfect-reward study",
        "",
        f"Final normalised score (×100, {spec['eval_episodes']}-episode evaluation at the end of training), "
        f"{spec['updates']} updates, "
        f"{len(ok)} runs ok, {len(failed)} failed. Cells: mean [95% bootstrap CI] over seeds. bc, smodice and dwbc "
        "ignore the reward: one set of runs per task, repeated in every reward row (†)."
        + (f" Recipe overrides: `{' '.join(spec['overrides'])}`." if spec.get("overrides") else ""),
        "",
        "| env | dataset | reward | " + " | ".join(algos) + " |",
        "|---|---|---|" + "---:|" * len(algos),
    ]
    table = {(env, dataset, reward, a): _scores(ok, env=env, dataset=dataset,
                                                reward=ANY if a in REWARD_AGNOSTIC else reward, algo=a)
             for env, dataset in tasks for reward in rewards for a in algos}
    uneven = len({len(x) for x in table.values() if len(x)}) > 1
    if uneven:
        out[2] += (" The grid is not complete: each cell gives its number of seeds in parentheses, and means over "
                   "tasks and seeds below are over the runs present.")
    for env, dataset in tasks:
        for reward in rewards:
            cells = []
            for a in algos:
                x = table[env, dataset, reward, a]
                cells.append(_fmt(x, uneven) + (" †" if a in REWARD_AGNOSTIC and len(x) else ""))
            out.append(f"| {env} | {dataset} | {reward} | " + " | ".join(cells) + " |")
    summary = summarise(rows)
    out += ["", "IQM over tasks and seeds [95% stratified bootstrap CI] (mean in parentheses):", "",
            "| reward | " + " | ".join(algos) + " |", "|---|" + "---:|" * len(algos)]
    for reward in rewards:
        cells = []
        for a in algos:
            s = summary.get((reward, a))
            cells.append("–" if s is None else f"{s['iqm']:.1f} [{s['iqm_ci'][0]:.1f}, {s['iqm_ci'][1]:.1f}] ({s['mean']:.1f})")
        out.append(f"| {reward} | " + " | ".join(cells) + " |")
    decision = decision_lines(summary, rows)
    if decision:
        out += ["", "When does the correction pay? (mean over the tasks and seeds both sides of a comparison have; "
                "max(iql, td3bc) is the stronger algorithm, i.e. the smaller gap; the … rows below it give each "
                "baseline's own gap and, a harsher reading, RGM against the better of the two in each task and seed)",
                "",
                "| comparison | gap | target | |", "|---|---:|---|---|", *decision]
    targets = target_lines(summary)
    if targets:
        out += ["", "Targets (mean over tasks and seeds" + ("; each side's runs, unpaired while the grid is not "
                                                         "complete" if uneven else "") + "):", "",
                "| reward | comparison | gap | target | |",
                "|---|---|---:|---|---|", *targets]
    expert = expert_target_lines(rows) if any(r["algo"] == "bc_expert" for r in ok) else []
    if expert:
        out += ["", "RGM against the obvious uses of the one expert trajectory (targets; mean over the seeds both "
                "sides have, their number given):", "", "| comparison | gap | seeds | target | |",
                "|---|---:|---:|---|---|", *expert]
    which = which_method_lines(rows)
    if which:
        out += ["", "Which method when: per task and reward, the best mean final score among the algorithms with "
                "≥ 2 runs there (mean [95% bootstrap CI], its seeds), and RGM's mean with its gap to it:", "",
                "| task | reward | best method | score | seeds | rgm (gap) |", "|---|---|---|---:|---:|---:|", *which]
    if failed:
        out += ["", "Failed runs:", ""] + [f"- {r['env']} {r['dataset']} {r['reward']} {r['algo']} s{r['seed']}: "
                                           f"{r['error']}" for r in failed]
    return "\n".join(out) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(rows)
    rewards = [w for w in (*REWARDS, ANY) if any(k[0] == w for k in summary)]
    algos = [a for a in ALGOS if any(k[1] == a for k in summary)]
    if not rewards:
        return
    fig, ax = plt.subplots(figsize=(1.9 * len(rewards) + 2, 3.6))
    width = 0.8 / max(len(algos), 1)
    for j, algo in enumerate(algos):
        xs, ys, errs = [], [], [[], []]
        for i, reward in enumerate(rewards):
            s = summary.get((reward, algo))
            if s is None:
                continue
            xs.append(i + (j - (len(algos) - 1) / 2) * width)
            ys.append(s["iqm"])
            errs[0].append(s["iqm"] - s["iqm_ci"][0])
            errs[1].append(s["iqm_ci"][1] - s["iqm"])
        ax.bar(xs, ys, width, yerr=errs, capsize=2, label=algo + (" †" if algo in REWARD_AGNOSTIC else ""))
    ax.set_xticks(range(len(rewards)), rewards)
    ax.set_ylabel("normalised score (IQM, 95% CI)")
    ax.set_title("Imperfect rewards: " + ", ".join(sorted({f"{r['env']} {r['dataset']}" for r in rows
                                                          if r["status"] == "ok"})), fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.axhline(0, color="k", lw=0.5)
    fig.tight_layout()
    save_figure(fig, path)


def diagnostics(rows: list[dict], out_dir: Path) -> str:
    """What the algorithms learned, read from the runs' checkpoints and summaries (means over seeds).

    Per (env, dataset, reward, algo): the share of the policy-extraction weight on ``D^O``'s top-decile
    episodes by true return (rgm, smodice, dwbc; bc's is the data share, uniform weights), for rgm and
    smodice the expert/union ratio of the mean visitation weight (where the expert is in the union), and
    for rgm the Spearman correlation with the true reward of r~ and r~ + Δr (on the union) and of Δr alone
    on ``D^O`` (:mod:`torchrl_rgm.diagnostics`).
    """
    import torch

    acc: dict[tuple, list] = {}
    nan = float("nan")
    for r in rows:
        if r["status"] != "ok" or base_algo(r["algo"]) in ("iql", "td3bc"):
            continue
        run_dir = out_dir / Cell(r["env"], r["dataset"], r["reward"], r["algo"], int(r["seed"])).name
        if not (run_dir / "summary.json").exists():
            continue
        summary = json.loads((run_dir / "summary.json").read_text())
        ratio = nan
        if base_algo(r["algo"]) in ("rgm", "smodice") and (run_dir / "checkpoint.pt").exists():
            last = torch.load(run_dir / "checkpoint.pt", weights_only=True)["history"][-1]
            ratio = last.get("weight_expert", nan) / max(last.get("weight_union", nan), 1e-12)
        get = lambda k: nan if summary.get(k) is None else float(summary[k])  # noqa: E731
        acc.setdefault((r["env"], r["dataset"], r["reward"], r["algo"]), []).append((
            get("top_decile_weight_share"), get("top_decile_data_share"), ratio, get("spearman_seen_vs_true"),
            get("spearman_corrected_vs_true"), get("spearman_correction_vs_true"), get("expert_weight_share"),
            get("weight_ess_fraction"), get("discriminator_expert_rho"), get("correction_saturated"),
            get("correction_target_outside_bound")))
    if not acc:
        return ""
    lines = ["", "Diagnostics at the end of training (mean over seeds): share of the policy's weight on D^O's top-decile "
             "episodes by true return (data share: uniform weights, as BC), expert/union visitation-weight ratio, and "
             "Spearman correlations with the true reward of the reward seen (r~) and corrected (r~ + Δr) on the union, "
             "and of Δr alone on D^O; the expert's share of the extraction weight and the weights' effective sample "
             "size over the union's size; the discriminator's ρ on the expert over the exact ratio's (1 = "
             "calibrated); Δr's share of rows at its bound and the share whose optimum lies beyond it "
             "(torchrl_rgm.diagnostics):", "",
             "| env | dataset | reward | algo | top-decile weight | data share | weight ratio | Spearman r~ "
             "| Spearman r~ + Δr | Spearman Δr (D^O) | expert weight share | ESS | ρ calibration | Δr at bound "
             "| Δr* beyond bound |",
             "|---|---|---|---|" + "---:|" * 11]
    for (env, dataset, reward, algo), vals in sorted(acc.items()):
        arr = np.array(vals, dtype=float)
        m = [float(np.mean(c[np.isfinite(c)])) if np.isfinite(c).any() else np.nan for c in arr.T]
        fmt = ["–" if not np.isfinite(v) else f"{v:.2f}" for v in m]
        lines.append(f"| {env} | {dataset} | {reward} | {algo} | " + " | ".join(fmt) + " |")
    return "\n".join(lines) + "\n"


def report(csv_path: Path, spec: dict, out_dir: Path | None = None) -> str:
    """Table, plot and diagnostics of the CSV's rows. The budget and overrides printed are the ones recorded in
    ``<csv stem>.spec.json`` beside the rows when it exists (``--report-only`` of another preset or without the
    run's ``--override`` then still describes the rows truly)."""
    rows = read_rows(csv_path)
    recorded = csv_path.with_suffix(".spec.json")
    if recorded.exists():
        spec = {**spec, **json.loads(recorded.read_text())}
    text = markdown(rows, spec)
    if out_dir is not None and out_dir.exists():
        text += diagnostics(rows, out_dir)
    _atomic_text(csv_path.with_suffix(".md"), text)
    plot(rows, csv_path.with_suffix(".png"))
    return text


# ------------------------------------------------------------------------------------------------
# The grid on Ray
# ------------------------------------------------------------------------------------------------


def prebuild(cells: list[Cell], spec: dict) -> None:
    """Build missing local datasets once, before parallel runs could race to build the same one."""
    from torchrl_rgm.generation.build import build_missing, is_local_namespace

    overrides = spec.get("overrides", [])
    namespace = next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("dataset.namespace=")), "rgm")
    if "dataset.build_if_missing=false" in overrides or not is_local_namespace(namespace):
        return
    for env in sorted({c.env for c in cells}):
        levels = {c.dataset for c in cells if c.env == env} | {"expert"}
        build_missing(env, levels, namespace=namespace, log=functools.partial(print, flush=True))


def run_grid(cells: list[Cell], spec: dict, csv_path: Path, out_dir: Path, *, address: str | None = None,
             num_cpus: int | None = None, threads: int = 1, retry_failed: bool = False,
             timeout: float | None = None, runs_per_process: int = 1, log=print) -> list[dict]:
    import ray

    rows = read_rows(csv_path)
    check_spec(csv_path.with_suffix(".spec.json"), spec, rows)
    done = {tuple(r[k] for k in KEY) for r in rows if r["status"] == "ok" or not retry_failed}
    todo = sorted((c for c in cells if c.key not in done), key=run_order)
    log(f"{len(cells)} runs in the grid, {len(cells) - len(todo)} already in {csv_path}, {len(todo)} to run")
    if not todo:
        return rows
    if address is None:
        prebuild(todo, spec)
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"RL_WARNINGS": "0",  # workers import benchmarks.common from the checkout
                                           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}})
        root = str(ROOT)
    else:  # a cluster: ship the checkout; datasets are built on each node by the recipe if missing
        ray.init(address=address, runtime_env={"working_dir": str(ROOT), "excludes": [
            ".git", ".venv", ".ci-venv", "outputs", "docs/_build", "*.whl", ".whl"]})
        root = None
    try:
        task = ray.remote(num_cpus=threads, max_retries=0)(run_cells)
        pending = {task.remote(g, spec, str(out_dir.resolve()) if address is None else str(out_dir), threads, root,
                               timeout): g for g in pack_cells(todo, runs_per_process)}
        start, n_done = time.time(), 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            group = pending.pop(ready[0])
            try:
                group_rows = ray.get(ready[0])
            except Exception as exc:  # the task itself died (worker lost): failed rows, the grid goes on
                error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                group_rows = [{**asdict(c), "final_score": "", "best_score": "", "wall_s": "", "status": "failed",
                               "error": error} for c in group]
            for cell, row in zip(group, group_rows):
                rows = [r for r in rows if tuple(r[k] for k in KEY) != cell.key] + [{k: str(row[k]) for k in COLUMNS}]
                n_done += 1
                log(f"[{n_done}/{len(todo)} {time.time() - start:.0f}s] {cell.name}: {row['status']} "
                    f"final {row['final_score'] or '-'} ({row['wall_s']} s) {row['error']}")
            write_rows(csv_path, rows)
    finally:
        ray.shutdown()
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="the ~2 h grid for this machine (default)")
    g.add_argument("--full", action="store_true", help="the paper-sized grid (for a cluster)")
    g.add_argument("--expert-baselines", action="store_true",
                   help="RGM against BC on the expert trajectory and SEABO/OTR-labelled offline RL, default protocol "
                        "(results/expert_baselines.*)")
    g.add_argument("--paper-protocol", action="store_true",
                   help="the authors' protocol on D4RL-style medium-replay, 3 envs x 4 rewards x 6 algorithms x 3 seeds "
                        "(results/paper_protocol.*)")
    p.add_argument("--envs", nargs="+")
    p.add_argument("--datasets", nargs="+")
    p.add_argument("--rewards", nargs="+")
    p.add_argument("--algos", nargs="+")
    p.add_argument("--seeds", type=int)
    p.add_argument("--updates", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--eval-episodes", type=int)
    p.add_argument("--discriminator-steps", type=int)
    p.add_argument("--override", action="append", default=[], help="extra recipe override for every run, e.g. device=cuda")
    p.add_argument("--csv", type=Path, help="default results/<imperfect_rewards|paper_protocol>.csv")
    p.add_argument("--out-dir", type=Path, help="default outputs/<imperfect_rewards|paper_protocol>")
    p.add_argument("--address", help="an existing Ray cluster (e.g. auto or ray://host:10001); default: local")
    p.add_argument("--num-cpus", type=int, help="local Ray CPUs (default: all cores)")
    p.add_argument("--threads-per-run", type=int, default=1, help="torch threads and Ray CPUs per run")
    p.add_argument("--runs-per-process", type=int, default=1,
                   help="train up to N seeds of one rgm/smodice configuration together in one process (the "
                        "recipe's seeds=[...], one vectorised update); other algorithms run one per process")
    p.add_argument("--timeout", type=float, help="seconds after which a run is recorded as failed")
    p.add_argument("--retry-failed", action="store_true", help="re-run rows whose status is failed")
    p.add_argument("--report-only", action="store_true", help="rewrite the table and plot from the CSV")
    args = p.parse_args(argv)

    preset = ("full" if args.full else "paper_protocol" if args.paper_protocol
              else "expert_baselines" if args.expert_baselines else "quick")
    spec = dict(GRIDS[preset])
    stem = preset if preset in ("paper_protocol", "expert_baselines") else "imperfect_rewards"
    args.csv = args.csv or ROOT / "benchmarks" / "results" / f"{stem}.csv"
    args.out_dir = args.out_dir or ROOT / "outputs" / stem
    for key in ("envs", "datasets", "rewards", "algos", "seeds", "updates", "eval_every", "eval_episodes",
                "discriminator_steps"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    spec["overrides"] = list(spec.get("overrides", [])) + list(args.override)
    for key in ("updates", "eval_every", "eval_episodes", "threads_per_run", "runs_per_process"):
        value = spec.get(key, getattr(args, key, None))
        if not (isinstance(value, int) and value > 0):
            raise GridError(f"--{key.replace('_', '-')} must be a positive integer, got {value}.")
    if spec["discriminator_steps"] < 0:
        raise GridError(f"--discriminator-steps must be ≥ 0, got {spec['discriminator_steps']}.")
    cells = make_cells(spec["envs"], spec["datasets"], spec["rewards"], spec["algos"], spec["seeds"],
                       spec.get("skip", ()))
    if not args.report_only:
        run_grid(cells, spec, args.csv, args.out_dir, address=args.address, num_cpus=args.num_cpus,
                 threads=args.threads_per_run, retry_failed=args.retry_failed, timeout=args.timeout,
                 runs_per_process=args.runs_per_process)
    print(report(args.csv, spec, args.out_dir))


if __name__ == "__main__":
    try:
        main()
    except GridError as exc:
        sys.exit(f"error: {exc}")
