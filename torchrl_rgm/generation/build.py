"""Build D4RL-style Minari datasets from the shipped behaviour policies.

    python -m torchrl_rgm.generation.build --env hopper     # rgm/hopper/{random,medium,medium-replay,medium-expert,expert}-v0
    python -m torchrl_rgm.generation.build --all            # all three environments
    python -m torchrl_rgm.generation.build --tasks          # the task families: rgm/<env>-<task>/{medium,medium-replay,expert}-v0

Levels: ``random`` (uniform actions), ``medium`` and ``expert`` (the shipped policies with
Gaussian exploration noise ``--noise``), ``medium-replay`` (D4RL's construction: what the TD3
learner collected from the start of its training until the medium snapshot — its uniform
warm-up, then each shipped ``replay_<k>`` snapshot with the training noise for the share of
training steps nearest to it, see :func:`replay_plan`; ``--replay-proportions even`` gives the
earlier construction, a tenth uniform and the snapshots in equal parts, 100k transitions),
``medium-expert`` (the medium and expert episodes together).
``ref_min_score``/``ref_max_score`` are the mean returns of the uniform policy and of the
noise-free expert over 10 episodes, so scores normalise the D4RL way. Per-step infos
(``x_velocity``, ``reward_forward``, ``reward_ctrl``, ``reward_survive``, ...) are stored for
the reward settings that need them. Same seed, same files; a dataset is written to a
temporary directory and moved into place, so an interrupted build leaves nothing half-written.
"""
from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import minari
import numpy as np
import torch
from minari.data_collector import EpisodeBuffer
from tqdm import tqdm

from ..data.pipeline import DatasetError
from .behaviour import POLICY_DIR, has_shipped_policies, load_policy, policy_action, policy_dir_name, torch_threads
from .tasks import ENVS, TASKS, env_id, env_names, make_env

__all__ = ["LEVELS", "TASK_LEVELS", "DEFAULT_STEPS", "INFO_KEYS", "WARMUP_STEPS", "REPLAY_PROPORTIONS",
           "is_local_namespace", "dataset_id", "rollouts", "replay_plan",
           "reference_scores", "write_dataset", "check_targets", "build_env", "build_missing", "file_digest", "main"]

#: The dataset levels built for an environment (ids ``rgm/<env>/<level>-v0``).
LEVELS = ["random", "medium", "medium-replay", "medium-expert", "expert"]
#: The levels ``--tasks`` builds for each task of a family.
TASK_LEVELS = ["medium", "medium-replay", "expert"]
#: Transitions per level at ``scale=1`` (``medium-expert`` reuses the medium and expert episodes; ``medium-replay``
#: with the default training proportions holds as many transitions as training took steps to reach medium, and
#: this size only with ``replay_proportions="even"``).
DEFAULT_STEPS = {"random": 100_000, "medium": 200_000, "medium-replay": 100_000, "expert": 200_000}
#: The behaviour learner's warm-up: its first environment steps take uniform actions
#: (``torchrl_rgm.generation.behaviour.train``'s ``start_steps``).
WARMUP_STEPS = 10_000
#: How ``medium-replay`` mixes its policies: ``training`` (D4RL: as the learner collected them), ``even`` (earlier).
REPLAY_PROPORTIONS = ("training", "even")
#: The per-step infos stored with each dataset (``z_position`` is the torso height ``qpos[1]``), for the
#: reward settings and task rewards that read them.
INFO_KEYS = ("x_position", "x_velocity", "reward_forward", "reward_ctrl", "reward_survive", "z_position")


def _info(env, info) -> dict:
    """The logged per-step infos; ``z_position`` (``qpos[1]``, torso height) for the task rewards."""
    return {**info, "z_position": float(env.unwrapped.data.qpos[1])}


def is_local_namespace(namespace: str) -> bool:
    """``rgm`` and ``rgm-<name>`` (e.g. the tutorials' small ``rgm-tutorial``) are built here, never downloaded."""
    return namespace == "rgm" or namespace.startswith("rgm-")


def dataset_id(env: str, level: str, namespace: str = "rgm") -> str:
    """The Minari id of a built dataset: ``<namespace>/<env>/<level>-v0``."""
    return f"{namespace}/{env}/{level}-v0"


def _episode(env, policy, noise, rng, seed, episode_id, max_steps=None) -> EpisodeBuffer:
    obs, info = env.reset(seed=seed)
    info = _info(env, info)
    observations, actions, rewards, terms, truncs = [obs], [], [], [], []
    infos = {k: [float(info.get(k, 0.0))] for k in INFO_KEYS}
    done = False
    while not done:
        if policy is None:
            action = rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)
        else:
            action = policy_action(policy, obs, noise, rng).astype(np.float32)
        obs, reward, term, trunc, info = env.step(action)
        info = _info(env, info)
        if max_steps is not None and len(actions) + 1 >= max_steps:
            trunc = True
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        terms.append(bool(term))
        truncs.append(bool(trunc) and not term)
        for k in INFO_KEYS:
            infos[k].append(float(info.get(k, 0.0)))
        done = term or trunc
    return EpisodeBuffer(
        id=episode_id, seed=seed, observations=observations, actions=actions, rewards=rewards,
        terminations=terms, truncations=truncs, infos={k: np.asarray(v) for k, v in infos.items()},
    )


def rollouts(env_name, sources, total_steps, seed, desc, max_episode_steps=None) -> list[EpisodeBuffer]:
    """Episodes until ``total_steps`` transitions, cycling over ``(policy, noise, share)`` sources."""
    env = make_env(env_name)
    rng = np.random.default_rng(seed)
    episodes, steps = [], 0
    bar = tqdm(total=total_steps, desc=desc, mininterval=2, leave=False)
    for policy, noise, share in sources:
        budget = steps + int(round(share * total_steps))
        while steps < budget:
            ep = _episode(env, policy, noise, rng, seed * 1_000_003 + len(episodes), len(episodes),
                          max_episode_steps)
            episodes.append(ep)
            steps += len(ep.actions)
            bar.update(len(ep.actions))
    bar.close()
    env.close()
    return episodes


def replay_plan(env_name: str, noise: float, proportions: str = "training",
                policy_dir: Path = POLICY_DIR) -> tuple[list, int | None]:
    """``(sources, steps)`` of ``medium-replay``: ``(policy, noise, share)`` triples for :func:`rollouts`.

    ``training`` (the default, D4RL's construction): the data the behaviour learner collected from
    its first step to the medium snapshot's step ``M`` (``steps = M``). Its first
    :data:`WARMUP_STEPS` steps take uniform actions; every later step ``t`` is given to the shipped
    snapshot (``replay_<k>``, medium included) whose training step is nearest to ``t``, acting with
    the training exploration ``noise`` — so each snapshot's share is the part of training it stands
    for (with snapshots every 10k steps this is D4RL's buffer up to the resolution of the snapshots;
    where the shipped snapshots are sparser, a snapshot stands for the plateau around it).
    ``even``: a tenth uniform, then the snapshots in equal parts (``steps`` None: the level's
    :data:`DEFAULT_STEPS`).
    """
    if proportions not in REPLAY_PROPORTIONS:
        raise ValueError(f"replay proportions must be one of {REPLAY_PROPORTIONS}, got {proportions!r}.")
    directory = policy_dir / policy_dir_name(env_name)
    replay = sorted(directory.glob("replay_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    if proportions == "even":
        return [(None, 0.0, 0.1)] + [(load_policy(env_name, p.stem, policy_dir), noise, 0.9 / len(replay))
                                     for p in replay], None
    info = json.loads((directory / "policies.json").read_text())
    medium_step = int(info["medium"]["step"])
    steps = sorted({(int(info[p.stem]["step"]), p.stem) for p in replay if int(info[p.stem]["step"]) <= medium_step})
    if medium_step <= WARMUP_STEPS or not steps:
        raise ValueError(f"{directory}: medium at step {medium_step} leaves nothing after the {WARMUP_STEPS}-step "
                         "warm-up; re-export the policies (python -m torchrl_rgm.generation.behaviour --export).")
    # step t (warm-up excluded) goes to the snapshot nearest in training steps: cut halfway between snapshots
    cuts = [WARMUP_STEPS] + [(a + b) / 2 for (a, _), (b, _) in zip(steps, steps[1:])] + [medium_step]
    cuts = [min(max(c, WARMUP_STEPS), medium_step) for c in cuts]
    sources = [(None, 0.0, WARMUP_STEPS / medium_step)]
    for (_, name), lo, hi in zip(steps, cuts, cuts[1:]):
        if hi > lo:
            sources.append((load_policy(env_name, name, policy_dir), noise, (hi - lo) / medium_step))
    return sources, medium_step


def reference_scores(env_name: str, seed: int, episodes: int = 10) -> tuple[float, float]:
    """``(ref_min_score, ref_max_score)``: mean returns of the uniform policy and of the noise-free expert.

    Each is averaged over ``episodes`` episodes; the D4RL normalisation maps them to 0 and 100.
    """
    env = make_env(env_name)
    rng = np.random.default_rng(seed)
    expert = load_policy(env_name, "expert")
    scores = []
    for policy in (None, expert):
        returns = [sum(_episode(env, policy, 0.0, rng, 10_000 + seed + k, k).rewards) for k in range(episodes)]
        scores.append(float(np.mean(returns)))
    return scores[0], scores[1]


def _renumber(episodes):
    return [dataclasses.replace(ep, id=i) for i, ep in enumerate(episodes)]


def write_dataset(ds_id: str, episodes, env_name, ref_min, ref_max, description, overwrite) -> Path:
    """Create the dataset in a temporary Minari root, then move it into place."""
    root = Path(minari.storage.get_dataset_path())
    final = root / ds_id
    tmp_root = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-build-"))
    old = os.environ.get("MINARI_DATASETS_PATH")
    try:
        os.environ["MINARI_DATASETS_PATH"] = str(tmp_root)
        minari.create_dataset_from_buffers(
            dataset_id=ds_id, buffer=_renumber(episodes), env=env_id(env_name), algorithm_name="TD3 behaviour policies",
            author="torchrl_rgm", code_permalink="torchrl_rgm/generation/build.py", ref_min_score=ref_min,
            ref_max_score=ref_max, description=description,
        )
        final.parent.mkdir(parents=True, exist_ok=True)
        for ns in (Path(ds_id).parent.parent, Path(ds_id).parent):  # namespace metadata: rgm/, rgm/<env>/
            src, dst = tmp_root / ns / "namespace_metadata.json", root / ns / "namespace_metadata.json"
            if src.exists() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
        if final.exists():
            if not overwrite:
                raise FileExistsError(f"{final} appeared during the build; rerun with --overwrite.")
            shutil.rmtree(final)
        os.replace(tmp_root / ds_id, final)
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
        shutil.rmtree(tmp_root, ignore_errors=True)
    return final


def check_targets(envs, levels, overwrite, namespace: str = "rgm") -> None:
    """Fail before any rollout if a build cannot complete.

    Raises :class:`ValueError` for a namespace not built here, :class:`FileExistsError` if a
    target dataset exists and not ``overwrite``, :class:`FileNotFoundError` if an environment
    has no shipped behaviour policies.
    """
    if not is_local_namespace(namespace):
        raise ValueError(f"--namespace {namespace!r}: datasets built here go to 'rgm' or 'rgm-<name>' "
                         "(other namespaces are Minari hub ones).")
    root = Path(minari.storage.get_dataset_path())
    existing = [dataset_id(e, lv, namespace) for e in envs for lv in levels
                if (root / dataset_id(e, lv, namespace)).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"Datasets already exist in {root}: {existing}. Pass --overwrite to rebuild them."
        )
    missing = [str(POLICY_DIR / policy_dir_name(e)) for e in envs if not has_shipped_policies(e)]
    if missing:
        raise FileNotFoundError(
            f"No shipped behaviour policies in {missing}: train them with "
            "`python -m torchrl_rgm.generation.behaviour --env <env>` then `--export`."
        )


def build_env(env_name: str, levels=LEVELS, scale: float = 1.0, seed: int = 0, noise: float = 0.1,
              overwrite: bool = False, namespace: str = "rgm", replay_proportions: str = "training",
              jobs: int = 1) -> dict:
    """Build ``<namespace>/<env_name>/<level>-v0`` for each level; returns what was written.

    ``scale`` multiplies the default sizes (``DEFAULT_STEPS``, and ``medium-replay``'s training
    length); ``namespace`` keeps small or experimental builds apart from the default ``rgm`` ones
    (e.g. the tutorials' ``rgm-tutorial``); ``replay_proportions``: see :func:`replay_plan`. ``jobs`` > 1 rolls
    the levels out in that many processes at once; each level has its own seed, so the files are the same.
    """
    if not is_local_namespace(namespace):
        raise ValueError(f"namespace {namespace!r}: datasets built here go to 'rgm' or 'rgm-<name>'.")
    with torch_threads(1):  # the policies are small: one thread each; the caller's count is given back
        return _build_env(env_name, levels, scale, seed, noise, overwrite, namespace, replay_proportions, jobs)


def _rollout_job(job) -> list[EpisodeBuffer]:
    with torch_threads(1):
        return rollouts(*job)


def _build_env(env_name, levels, scale, seed, noise, overwrite, namespace, replay_proportions, jobs=1) -> dict:
    steps = {k: max(1, int(v * scale)) for k, v in DEFAULT_STEPS.items()}
    ref_min, ref_max = reference_scores(env_name, seed)
    replay_sources, replay_steps = replay_plan(env_name, noise, replay_proportions)
    if replay_steps is not None:
        steps["medium-replay"] = max(1, int(replay_steps * scale))
    built = {}
    plans = {
        "random": [(None, 0.0, 1.0)],
        "medium": [(load_policy(env_name, "medium"), noise, 1.0)],
        "expert": [(load_policy(env_name, "expert"), noise, 1.0)],
        "medium-replay": replay_sources,
    }
    order = ("random", "medium", "medium-replay", "expert", "medium-expert")  # medium-expert reuses two
    wanted = [lv for lv in order if lv in levels or (lv in ("medium", "expert") and "medium-expert" in levels)]
    # the seed of a level does not depend on which others are built, nor on where it is rolled out
    jobs_ = {lv: (env_name, plans[lv], steps[lv], seed + 101 * LEVELS.index(lv), f"{env_name} {lv}")
             for lv in wanted if lv != "medium-expert"}
    if jobs > 1 and len(jobs_) > 1:
        # spawn, not fork: the caller may hold OpenMP or Ray threads, and a forked child inherits their locks
        with ProcessPoolExecutor(min(jobs, len(jobs_)), mp_context=multiprocessing.get_context("spawn")) as pool:
            cache = dict(zip(jobs_, pool.map(_rollout_job, jobs_.values())))
    else:
        cache = {lv: rollouts(*job) for lv, job in jobs_.items()}
    for level in wanted:
        if level == "medium-expert":
            episodes = list(cache["medium"]) + list(cache["expert"])
        else:
            episodes = cache[level]
        if level not in levels:
            continue
        ds_id = dataset_id(env_name, level, namespace)
        task = (f" for the task {env_name} (reward: see torchrl_rgm/generation/tasks.py)" if env_name in TASKS else "")
        how = f", {replay_proportions} proportions" if level == "medium-replay" else ""
        description = (f"{level} data on {env_id(env_name)}{task} from torchrl_rgm's TD3 behaviour policies "
                       f"(noise {noise}, seed {seed}{how}); see torchrl_rgm/generation/build.py")
        path = write_dataset(ds_id, episodes, env_name, ref_min, ref_max, description, overwrite)
        built[ds_id] = {"episodes": len(episodes), "steps": int(sum(len(e.actions) for e in episodes)),
                        "ref_min_score": ref_min, "ref_max_score": ref_max, "path": str(path)}
    return built


def build_missing(env_name: str, levels, *, scale: float = 1.0, namespace: str = "rgm", log=print) -> list[str]:
    """Build the ``levels`` of ``env_name`` that are not local yet (at ``scale``); returns their ids.

    What the recipes, the study's pre-build and the tutorials do before loading: existing datasets are
    left as they are, whatever their size. Processes building the same environment take turns (an exclusive
    lock per namespace and environment): the second waits for the first and then finds its datasets built.
    """
    root = Path(minari.storage.get_dataset_path())
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".build-{namespace}-{env_name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        local = set(minari.list_local_datasets())
        missing = sorted({lv for lv in levels if dataset_id(env_name, lv, namespace) not in local})
        ids = [dataset_id(env_name, lv, namespace) for lv in missing]
        unreadable = [i for i in ids if (root / i).exists()]
        if unreadable:  # there, but Minari cannot list them: damaged, or half-deleted by hand
            raise DatasetError(f"{unreadable} exist in {root} but cannot be read (a damaged or incomplete "
                               "dataset): rebuild them with python -m torchrl_rgm.generation.build --overwrite, or "
                               "delete them and run again.")
        if missing:
            log(f"building {ids} (once; python -m torchrl_rgm.generation.build)")
            build_env(env_name, levels=missing, scale=scale, namespace=namespace,
                      jobs=min(len(missing), len(os.sched_getaffinity(0))))
    return ids


def file_digest(path: Path) -> str:
    """SHA-256 of every file under ``path`` (relative names and contents): equal digests, identical builds."""
    h = hashlib.sha256()
    for p in sorted(Path(path).rglob("*")):
        if p.is_file():
            h.update(p.relative_to(path).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def main(argv=None) -> dict:
    """Command line: build the datasets of ``--env``, of ``--all`` environments or of the ``--tasks``.

    Returns what was written, as :func:`build_env` does.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--env", choices=env_names(), help="an environment or a task (<env>-<task>)")
    group.add_argument("--all", action="store_true", help="hopper, halfcheetah and walker2d")
    group.add_argument("--tasks", action="store_true", help=f"every task of the families: {sorted(TASKS)}")
    parser.add_argument("--levels", nargs="+", default=None, choices=LEVELS,
                        help=f"default: all for environments, {TASK_LEVELS} for tasks")
    parser.add_argument("--scale", type=float, default=1.0, help=f"multiplies the default sizes {DEFAULT_STEPS}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.1, help="Gaussian exploration noise of the policies")
    parser.add_argument("--jobs", type=int, default=min(3, os.cpu_count() or 1), help="environments built in parallel")
    parser.add_argument("--overwrite", action="store_true", help="rebuild datasets that already exist")
    parser.add_argument("--namespace", default="rgm", help="ids <namespace>/<env>/<level>-v0: rgm or rgm-<name>")
    parser.add_argument("--replay-proportions", choices=REPLAY_PROPORTIONS, default="training",
                        help="medium-replay: as training collected it (D4RL) or the earlier even mix")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be > 0")
    envs = sorted(ENVS) if args.all else sorted(TASKS) if args.tasks else [args.env]
    args.levels = args.levels or (TASK_LEVELS if args.tasks or args.env in TASKS else LEVELS)
    if args.tasks:  # every task whose behaviour policies are shipped; say which are not
        untrained = [t for t in envs if not has_shipped_policies(t)]
        for t in untrained:
            print(f"skipping {t}: no shipped behaviour policies (train them with "
                  f"`python -m torchrl_rgm.generation.behaviour --env {t}` then `--export`)")
        envs = [t for t in envs if t not in untrained]
    check_targets(envs, args.levels, args.overwrite, args.namespace)  # before any rollout
    start = time.time()
    kwargs = dict(levels=args.levels, scale=args.scale, seed=args.seed, noise=args.noise, overwrite=args.overwrite,
                  namespace=args.namespace, replay_proportions=args.replay_proportions)
    if args.jobs > 1 and len(envs) > 1:
        with ProcessPoolExecutor(min(args.jobs, len(envs))) as pool:
            results = list(pool.map(_build_one, [(e, kwargs) for e in envs]))
    else:
        results = [_build_one((e, kwargs)) for e in envs]
    built = {k: v for r in results for k, v in r.items()}
    w = max([34, *(len(k) + 2 for k in built)])
    print(f"\n{'dataset':<{w}}{'episodes':>9}{'steps':>10}{'ref_min':>10}{'ref_max':>10}")
    for ds_id, info in built.items():
        print(f"{ds_id:<{w}}{info['episodes']:>9}{info['steps']:>10}{info['ref_min_score']:>10.1f}{info['ref_max_score']:>10.1f}")
    print(f"built {len(built)} datasets in {time.time() - start:.0f} s")
    return built


def _build_one(job):
    env_name, kwargs = job
    return build_env(env_name, **kwargs)


if __name__ == "__main__":
    main()
