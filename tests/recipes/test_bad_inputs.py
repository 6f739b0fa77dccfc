"""The reliability catalogue: bad inputs and crashes through the real recipe and loader, on tiny real datasets.

Each bad input must end in one clear message (``error: ...``: the problem and the fix, no traceback), before any
training work, and leave every existing output and dataset byte-identical. The crash cases (a killed run, a
damaged checkpoint, two runs on one directory, a resume with other settings) must end in a usable run.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .helpers import run_recipe, side_by_side, tiny_datasets

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "rgm_mujoco.py"
TINY = ["budget.discriminator_steps=10", "algo.batch_size=32", "algo.hidden=[16,16]", "eval.episodes=1",
        "eval.num_envs=1", "compile=false"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    environ = tiny_datasets(base, ["'rgm/hopper/medium-replay-v0', steps=400, policy='actor', max_steps=60",
                                   "'rgm/hopper/expert-v0', steps=120, seed=3, policy='actor', max_steps=60",
                                   "'rgm/walker2d/medium-replay-v0', steps=200, env='walker2d', max_steps=50",
                                   "'rgm/halfcheetah/expert-v0', steps=100, seed=2, env='halfcheetah', max_steps=50",
                                   "'rgm-short/hopper/expert-v0', steps=1, seed=3, policy='actor', max_steps=1"],
                            OMP_NUM_THREADS="1")
    minari_dir = base / "minari"

    def copy(level, namespace, drop=()):  # a copy of rgm/hopper/<level>-v0 under another namespace
        target = minari_dir / namespace / "hopper" / f"{level}-v0"
        shutil.copytree(minari_dir / "rgm" / "hopper" / f"{level}-v0", target)
        meta = target / "data" / "metadata.json"
        fields = json.loads(meta.read_text())
        fields["dataset_id"] = f"{namespace}/hopper/{level}-v0"
        meta.write_text(json.dumps({k: v for k, v in fields.items() if k not in drop}))

    copy("medium-replay", "rgm-short")  # beside an expert set of one one-step episode
    for level in ("medium-replay", "expert"):  # a user's own datasets, without reference scores
        copy(level, "rgm-noref", drop=("ref_min_score", "ref_max_score"))
    damaged = base / "minari" / "rgm-damaged" / "hopper"  # a copy whose data file was cut short
    shutil.copytree(base / "minari" / "rgm" / "hopper", damaged)
    for f in damaged.rglob("main_data*"):
        f.write_bytes(f.read_bytes()[:2000])
    finished = base / "finished"  # an existing run every bad input must leave alone
    run(environ, f"run_dir={finished}", "budget.updates=20", "eval.every=20", "checkpoint_every=20")
    return environ, base


def run(environ, *overrides, check=True, **kwargs):
    return run_recipe(RECIPE, TINY, environ, *overrides, check=check, **kwargs)


def recipe_in_process(environ, overrides) -> tuple[int, str]:
    """``recipes/rgm_mujoco.py``'s ``train_or_exit`` on the composed configuration: (exit status, output)."""
    import contextlib
    import io

    from hydra import compose, initialize_config_dir

    sys.path.insert(0, str(RECIPE.parent))
    from rgm_mujoco import train_or_exit

    out = io.StringIO()
    saved = {k: os.environ.get(k) for k in ("MINARI_DATASETS_PATH", "TORCHRL_RGM_CACHE")}
    os.environ.update({k: environ[k] for k in saved})
    try:
        with initialize_config_dir(config_dir=str(RECIPE.parent / "config"), version_base=None):
            cfg = compose("rgm_mujoco", overrides=[*TINY, *overrides])
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            train_or_exit(cfg)
        return 0, out.getvalue()
    except SystemExit as exit_:
        return (exit_.code if isinstance(exit_.code, int) else 1), out.getvalue() + str(exit_.code)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def snapshot(*roots: Path) -> dict:
    return {str(p): hashlib.sha1(p.read_bytes()).hexdigest() for root in roots for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".run-claim" and not p.name.endswith(".lock")}


def bad_inputs(base: Path) -> list[tuple]:
    """(what, overrides, the message it must print[, extra environment variables])."""
    taken = base / "taken"
    taken.mkdir(exist_ok=True)
    (taken / "notes.txt").write_text("mine")
    not_a_run = base / "not-a-run"
    not_a_run.mkdir(exist_ok=True)
    cases = [
        ("unknown env option", ["env=pong"], "env/pong"),
        ("unknown env name", ["env.name=pong"], "Unknown env 'pong'"),
        ("unknown reward setting", ["reward.name=inverted"], "Unknown reward setting 'inverted'"),
        ("alpha of 0", ["algo.alpha=0"], "algo.alpha must be > 0"),
        ("env alpha of 0", ["env.alpha=0"], "env.alpha must be > 0, got 0 (algo.alpha follows it)"),
        ("gamma of 1", ["algo.gamma=1.0"], "algo.gamma must lie in (0, 1)"),
        ("negative budget", ["budget.updates=-5"], "budget.updates must be > 0"),
        ("fractional expert count", ["dataset.n_expert_trajectories=1.5"], "must be a whole number of trajectories"),
        ("too many expert trajectories", ["dataset.n_expert_trajectories=500"], "holds only"),
        ("mistyped reward keyword", ["reward=partial", "+reward.kwargs.pp=0.3"], "accepts ['p', 'seed']"),
        ("actor IQL cannot use", ["algo=iql", "algo.actor=deterministic"], "algo=iql needs a stochastic actor"),
        ("unknown logger", ["logger.backend=mlflow"], "Unknown logger backend 'mlflow'"),
        ("unknown compile", ["compile=maybe"], "Unknown compile 'maybe'"),
        ("unknown divergence", ["algo.divergence=js"], "Unknown divergence 'js'"),
        ("unknown dataset level", ["dataset.union=hard"], "Unknown dataset level 'hard'"),
        ("relabelling outside data sharing", ["algo=iql_relabeled"], "belongs to recipes/rgm_datasharing.py"),
        ("run dir with other files", [f"run_dir={taken}"], "exists and is not empty"),
        ("resume of a directory that is no run", [f"resume={not_a_run}"], "it is not a run directory"),
        ("unwritable run dir", ["run_dir=/proc/rgm-run"], "Cannot create the run directory /proc/rgm-run"),
        ("batch larger than the union", ["algo.batch_size=100000"], "is larger than the union"),
        ("missing dataset on the hub namespace", ["dataset.namespace=mujoco"], "mujoco/hopper/medium-replay-v0"),
        ("resume with other settings", [f"resume={base / 'finished'}", "seed=5", "algo.alpha=0.7"],
         "seed: the run has 0, the command line asks 5; algo.alpha"),
        ("resume shortening the run", [f"resume={base / 'finished'}", "budget.updates=10"],
         "can lengthen it but not shorten it"),
        ("reward=true (a boolean to Hydra)", ["reward=true"], "the dataset's own reward is reward=true_reward"),
        ("damaged dataset", ["dataset.namespace=rgm-damaged"], "but cannot be read (a damaged or incomplete dataset)"),
        ("unwritable conversion cache", ["env.name=hopper"], "point TORCHRL_RGM_CACHE at a writable directory",
         {"TORCHRL_RGM_CACHE": "/proc/rgm-cache"}),
        # issue 30: checks that need the data, right after loading; keys nothing reads, with or without '+'
        ("dataset without reference scores", ["dataset.namespace=rgm-noref"], "has no ref_min_score/ref_max_score"),
        ("expert set of one one-step episode", ["dataset.namespace=rgm-short"], "real transition(s), too few to tell"),
        ("a key added with Hydra's own hint", ["+budget.update=10"], "did you mean budget.updates? A '+' would", {}),
        ("a mistyped key", ["budget.update=10"], "has no key 'budget.update'", {}),
        ("a mistyped algorithm key", ["algo=iql", "algo.expectil=0.8"], "did you mean algo.expectile?", {}),
        ("a key that is nowhere", ["+trainer.lr=1e-3"], "has no key 'trainer.lr' (trainer is not there)", {}),
        ("unknown precision", ["precision=fp8"], "Unknown precision 'fp8'"),
        ("no evaluation episodes", ["eval.episodes=0"], "eval.episodes must be > 0"),
        ("negative discriminator pre-training", ["budget.discriminator_steps=-1"], "must be ≥ 0, got -1"),
    ]
    if torch.cuda.is_available():
        cases = [c for c in cases if "cuda" not in c[0]]
    else:
        cases.append(("CUDA without a GPU", ["device=cuda"], "CUDA is not available"))
    return cases


def test_every_bad_input_ends_in_one_clear_message_and_touches_nothing(env):
    environ, base = env
    cases = bad_inputs(base)
    assert len(cases) >= 35
    # a run stopped by a check leaves no run directory behind (issue 30 #6): each case gets its own run_dir
    cases = [(c[0], c[1] if any(o.split("=")[0] in ("run_dir", "resume") for o in c[1])
              else [*c[1], f"run_dir={base / 'case-runs' / str(i)}"], *c[2:]) for i, c in enumerate(cases)]
    before = snapshot(base / "minari", base / "finished", base / "taken")
    # Inputs the command line itself must carry run as the user types them; the others go through the same
    # recipe function in this process (one interpreter start for all: the catalogue stays under two minutes).
    cli = [c for c in cases if len(c) > 3 or any(o.split("=")[0] in ("env", "reward", "run_dir", "resume")
                                                 for o in c[1])]
    in_process = [c for c in cases if c not in cli]
    outs = side_by_side(lambda c: run({**environ, **(c[3] if len(c) > 3 else {})}, *c[1], check=False), cli)
    results = [(c, o.returncode, o.stdout + o.stderr) for c, o in zip(cli, outs)]
    results += [(c, *recipe_in_process(environ, c[1])) for c in in_process]
    problems = []
    for (what, _, message, *_), code, text in results:
        if code == 0 or message not in text or "Traceback" in text:
            problems.append(f"{what}: exit {code}, wanted {message!r}, got {text.strip()[-400:]!r}")
    assert not problems, "\n".join(problems)
    assert snapshot(base / "minari", base / "finished", base / "taken") == before
    assert not (base / "rgm-run").exists()
    left = sorted(p.name for p in (base / "case-runs").iterdir()) if (base / "case-runs").exists() else []
    assert not left, [cases[int(n)][0] for n in left]


def test_a_full_disk_says_so_and_how_to_continue(env, tmp_path):
    """Issue 30 #3: run_dir on a file system too small for a checkpoint (a real tmpfs) ends in one line naming the
    full device and the resume command, not torch.save's ``unexpected pos`` traceback."""
    environ, base = env
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.decode().strip()[:80]})")
    try:
        out = run(environ, f"run_dir={mount / 'run'}", "budget.updates=40", "eval.every=40", "checkpoint_every=20",
                  "algo.hidden=[64,64]", check=False)
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "Traceback" not in text, text[-1500:]
    assert "error: No space left on the device of" in text and f"resume={mount / 'run'}" in text, text[-1500:]


def test_atomic_write_names_a_full_disk_and_keeps_the_old_file(tmp_path, monkeypatch):
    """The same without a mount: ENOSPC from the writer, and a writer's own error on a file system left with no
    room, both become DiskFullError; the previous file is intact and no temporary file is left."""
    import errno

    from torchrl_rgm import atomic
    from torchrl_rgm.atomic import DiskFullError, atomic_path

    path = tmp_path / "checkpoint.pt"
    path.write_text("previous")
    with pytest.raises(DiskFullError, match="No space left on the device.*the previous checkpoint.pt is intact"):
        with atomic_path(path) as tmp:
            tmp.write_text("part")
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    with pytest.raises(DiskFullError):
        with atomic_path(path) as tmp:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 26560 vs 26448")
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="unrelated"):  # room to spare: the writer's error as it was
        with atomic_path(path) as tmp:
            raise RuntimeError("unrelated")
    assert path.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_expert_data_from_another_environment_are_refused(env):
    """walker2d and halfcheetah share observation and action shapes; the env ids differ."""
    environ, base = env
    code = ("from torchrl_rgm.data import load_rgm_data\n"
            "load_rgm_data('rgm/walker2d/medium-replay-v0', 'rgm/halfcheetah/expert-v0', n_expert_trajectories=1)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True)
    assert out.returncode != 0
    assert "rgm/halfcheetah/expert-v0 was collected in HalfCheetah-v5, rgm/walker2d/medium-replay-v0 in Walker2d-v5" \
        in out.stderr


def test_two_runs_on_one_directory_one_wins(env):
    environ, base = env
    run_dir = base / "contested"
    procs = [subprocess.Popen([sys.executable, str(RECIPE), *TINY, f"run_dir={run_dir}", "budget.updates=30",
                               "eval.every=30", "checkpoint_every=30"], cwd=ROOT, env=environ,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [(p.wait(), p.stdout.read() + p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in outs)
    assert codes[0] == 0 and codes[1] != 0, outs
    loser = next(text for code, text in outs if code != 0)
    assert "is in use by another run" in loser or "exists and is not empty" in loser, loser
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["updates"] == 30
    logged = (run_dir / "logs" / "rgm" / "scalars" / "normalized_score.csv").read_text().split()
    assert len(logged) == 1, logged  # one curve, not two interleaved
    assert not (run_dir / ".run-claim").exists()  # released at exit


def test_a_run_killed_before_its_first_checkpoint_can_be_resumed_or_reused(env):
    environ, base = env
    dead = base / "dead"
    dead.mkdir()
    finished = base / "finished"
    (dead / "config.yaml").write_text((finished / "config.yaml").read_text().replace(str(finished), str(dead)))
    (dead / ".run-claim").write_text(f"{os.uname().nodename} 999999999")  # its process is gone
    out = run(environ, f"resume={dead}")
    assert json.loads((dead / "summary.json").read_text())["updates"] == 20, out.stdout
    reused = base / "dead2"
    reused.mkdir()
    (reused / "config.yaml").write_text("left by a run that died")
    run(environ, f"run_dir={reused}", "budget.updates=10", "eval.every=10", "checkpoint_every=10")
    assert json.loads((reused / "summary.json").read_text())["updates"] == 10


def test_resume_of_a_finished_run_keeps_its_summary_and_a_longer_budget_continues(env):
    environ, base = env
    finished = base / "finished"
    before = (finished / "summary.json").read_bytes()
    out = run(environ, f"resume={finished}")
    assert "finished its 20 updates" in out.stdout and (finished / "summary.json").read_bytes() == before
    longer = base / "longer"
    run(environ, f"run_dir={longer}", "budget.updates=20", "eval.every=20", "checkpoint_every=20")
    run(environ, f"resume={longer}", "budget.updates=40")
    summary = json.loads((longer / "summary.json").read_text())
    assert summary["updates"] == 40
    state = torch.load(longer / "checkpoint.pt", weights_only=True)
    assert state["budget"] == 40 and [h["step"] for h in state["history"]] == [20, 40]


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(env):
    environ, base = env
    run_dir = base / "damaged"
    run(environ, f"run_dir={run_dir}", "budget.updates=40", "eval.every=20", "checkpoint_every=20")
    whole = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").unlink()
    data = (run_dir / "checkpoint.pt").read_bytes()
    (run_dir / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # truncated
    out = run(environ, f"resume={run_dir}")
    assert "checkpoint.pt is unreadable" in out.stdout and "resuming from" in out.stdout
    assert json.loads((run_dir / "summary.json").read_text())["final_normalized_score"] == \
        whole["final_normalized_score"]


def test_resume_does_not_repeat_logged_evaluations(env):
    environ, base = env
    run_dir = base / "logs-twice"
    common = ["budget.updates=300", "eval.every=20", "checkpoint_every=100"]
    proc = subprocess.Popen([sys.executable, str(RECIPE), *TINY, f"run_dir={run_dir}", *common], cwd=ROOT, env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scores = run_dir / "logs" / "rgm" / "scalars" / "normalized_score.csv"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # killed after an evaluation that follows a checkpoint
        if (run_dir / "checkpoint.pt").exists() and scores.exists() and len(scores.read_text().split()) >= 7:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run(environ, f"resume={run_dir}")
    steps = [int(float(line.split(",")[0])) for line in scores.read_text().split()]
    assert steps == sorted(set(steps)) and steps[-1] == 300, steps


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_save_and_say_how_to_resume(env, sig):
    """Issue 30 #6: SIGTERM (kill, a scheduler) behaves as Ctrl-C: stop between two updates, save that update,
    print the resume command; no traceback, no leaked-semaphore warning."""
    environ, base = env
    run_dir = base / f"interrupted-{sig.name}"
    proc = subprocess.Popen([sys.executable, str(RECIPE), *TINY, f"run_dir={run_dir}", "budget.updates=100000",
                             "eval.every=50000", "checkpoint_every=99999"], cwd=ROOT, env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run_dir / "config.yaml").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(3)  # into the training loop, before its first checkpoint
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and f"resume={run_dir}" in err and "Traceback" not in err, err[-800:]
    assert "leaked semaphore" not in err, err[-800:]
    step = torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"]
    assert f"interrupted at update {step}, saved" in err and 0 < step < 99999, err[-800:]


def test_same_command_same_seed_same_threads_gives_identical_numbers(env):
    """Issue 18 #12: the rule the README states; what does change numbers (compile, CPU, dataset bytes) is listed
    there with measurements."""
    environ, base = env
    summaries = []
    for name in ("same-a", "same-b"):
        run({**environ, "OMP_NUM_THREADS": "2"}, f"run_dir={base / name}", "budget.updates=60", "eval.every=30",
            "checkpoint_every=30", "seed=11")
        s = json.loads((base / name / "summary.json").read_text())
        summaries.append({k: v for k, v in s.items()
                          if k not in ("wall_time_s", "updates_per_s", "run_dir", "discriminator_s", "peak_memory_mb")})
    assert summaries[0] == summaries[1]
