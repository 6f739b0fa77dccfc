"""The dataset builder: deterministic, atomic, never overwrites without being asked."""
import os
from pathlib import Path

import minari
import numpy as np
import pytest
import torch

from torchrl_rgm.generation import build as build_mod
from torchrl_rgm.generation.behaviour import POLICY_DIR, evaluate, load_policy

from .conftest import build_tiny


def test_same_seed_gives_identical_files(tmp_path, monkeypatch):
    digests = []
    for run in ("a", "b"):
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / run))
        path = build_tiny(steps=300, seed=3, policy="actor", max_steps=40)
        digests.append(build_mod.file_digest(path))
    assert digests[0] == digests[1]
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "c"))
    assert build_mod.file_digest(build_tiny(steps=300, seed=4, policy="actor", max_steps=40)) != digests[0]


def test_levels_rolled_out_side_by_side_give_the_same_files(tmp_path, monkeypatch):
    """``jobs=2`` (what a run that builds its datasets uses on two cores) writes the bytes ``jobs=1`` writes."""
    digests = []
    for jobs in (1, 2):
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / f"jobs{jobs}"))
        torch.set_num_threads(2)
        built = build_mod.build_env("hopper", levels=["random", "expert"], scale=0.004, jobs=jobs)
        assert torch.get_num_threads() == 2
        digests.append({k: build_mod.file_digest(Path(v["path"])) for k, v in built.items()})
    assert list(digests[0]) == ["rgm/hopper/random-v0", "rgm/hopper/expert-v0"] and digests[0] == digests[1]


def test_policy_action_is_the_actor_module_s_action():
    """The per-step fast path (the module on the tensor) gives the TensorDictModule's action, bit for bit."""
    from tensordict import TensorDict

    from torchrl_rgm.generation.behaviour import _plain, policy_action

    actor = load_policy("hopper", "medium")
    assert _plain(actor)  # the shipped policies take the fast path
    obs = np.random.default_rng(0).standard_normal((20, 11)).astype(np.float32)
    for noise in (0.0, 0.1):
        fast = [policy_action(actor, o, noise, np.random.default_rng(1)) for o in obs]
        with torch.no_grad():
            slow = [actor(TensorDict(observation=torch.as_tensor(o).unsqueeze(0), batch_size=[1]))["action"][0].numpy()
                    for o in obs]
        noises = [noise * np.random.default_rng(1).standard_normal(3) if noise else 0.0 for _ in obs]
        np.testing.assert_array_equal(np.stack(fast), np.clip(np.stack(slow) + np.stack(noises) if noise
                                                               else np.stack(slow), -1.0, 1.0))


def test_existing_dataset_needs_overwrite(tiny):
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_tiny()
    with pytest.raises(FileExistsError, match="Pass --overwrite"):
        build_mod.check_targets(["hopper"], ["tiny"], overwrite=False)


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(minari, "create_dataset_from_buffers", crash)
    with pytest.raises(KeyboardInterrupt):
        build_tiny(steps=50)
    root = Path(os.environ["MINARI_DATASETS_PATH"])
    assert not (root / "rgm/hopper/tiny-v0").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp")]
    assert "rgm/hopper/tiny-v0" not in minari.list_local_datasets()


def test_builder_refuses_before_rolling_out(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(build_mod, "rollouts", lambda *a, **k: calls.append(1))
    (tmp_path / "minari" / "rgm/hopper/random-v0").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="rgm/hopper/random-v0"):
        build_mod.main(["--env", "hopper", "--levels", "random"])
    assert calls == []


shipped = [e for e in ("hopper", "walker2d", "halfcheetah") if (POLICY_DIR / e / "expert.pt").exists()]


@pytest.mark.skipif(not shipped, reason="no behaviour policies shipped yet")
@pytest.mark.parametrize("env", shipped)
def test_shipped_expert_beats_medium_beats_random(env):
    expert = np.mean(evaluate(load_policy(env, "expert"), env, episodes=3))
    medium = np.mean(evaluate(load_policy(env, "medium"), env, episodes=3))
    random_return = np.mean([sum(build_mod._episode(build_mod.make_env(env), None, 0.0, np.random.default_rng(k), k, k).rewards)
                             for k in range(3)])
    assert expert > medium > random_return


def test_replay_snapshots_cover_the_way_to_medium():
    from torchrl_rgm.generation.behaviour import _replay_snapshots

    # a plateau then a jump: evenly spaced steps would all sit on the plateau
    returns = [30, 250, 300, 310, 320, 330, 340, 450, 490, 930]
    chosen = _replay_snapshots(returns, 5)
    assert chosen == sorted(set(chosen)) and len(chosen) == 5
    assert chosen[0] == 0 and chosen[-1] == len(returns) - 1  # from the first snapshot to medium
    assert {7, 8} <= set(chosen)  # the behaviour between the plateau and medium is represented
    assert _replay_snapshots([10, 20], 5) == [0, 1]


def test_export_medium_is_a_third_of_the_way_from_the_start(tmp_path):
    """Medium = the first snapshot a third of the way (x0.8) from the first snapshot's return (or 0) to the
    expert's: with rewards negative at rest (halfcheetah-jump) a third of the expert's return would be ~expert."""
    import torch

    from torchrl_rgm.generation.behaviour import export
    from torchrl_rgm.modules import make_actor

    actor = make_actor(17, 6).state_dict()
    for name, returns, medium in (("jump", [-2000, -3700, -1300, -300, 390, 520], 2),
                                  ("run", [0, 2600, 280, 3500, 4800], 1)):
        work = tmp_path / name
        (work / "snapshots").mkdir(parents=True)
        for i, r in enumerate(returns):
            torch.save({"actor": actor, "step": 10_000 * (i + 1), "return": float(r)},
                       work / "snapshots" / f"step_{10_000 * (i + 1):08d}.pt")
        info = export("halfcheetah-jump", work, tmp_path / f"out-{name}", n_replay=2)
        assert info["expert"]["return"] == max(returns)
        assert info["medium"]["step"] == 10_000 * (medium + 1), info
        assert torch.load(tmp_path / f"out-{name}" / "medium.pt", weights_only=True)["obs_dim"] == 17


def test_tasks_flag_skips_tasks_without_policies_and_refuses_existing(monkeypatch, capsys, tmp_path):
    """--tasks checks every task with shipped policies (here: refuses to overwrite them) and names the others."""
    import torchrl_rgm.generation.build as build_mod

    for task in ("halfcheetah-run-forward", "halfcheetah-run-backward", "halfcheetah-jump", "walker2d-run-forward",
                 "walker2d-run-backward"):
        build_tiny(f"rgm/{task}/medium-v0", steps=20, env=task, max_steps=10)
    with pytest.raises(FileExistsError, match="Pass --overwrite") as err:
        build_mod.main(["--tasks", "--levels", "medium"])
    shipped = [t for t in build_mod.TASKS if (build_mod.POLICY_DIR / build_mod.policy_dir_name(t) / "expert.pt").exists()]
    for task in build_mod.TASKS:
        assert (f"rgm/{task}/medium-v0" in str(err.value)) == (task in shipped)
    out = capsys.readouterr().out
    for task in set(build_mod.TASKS) - set(shipped):
        assert f"skipping {task}: no shipped behaviour policies" in out


def test_namespace_keeps_small_builds_apart(monkeypatch):
    """``namespace="rgm-<name>"`` (the tutorials' ``rgm-tutorial``) writes ``rgm-<name>/<env>/<level>-v0``,
    never the default ``rgm/...`` ids; a hub namespace is refused before any rollout."""
    torch.set_num_threads(2)
    built = build_mod.build_env("hopper", levels=["random"], scale=0.005, namespace="rgm-small")
    assert torch.get_num_threads() == 2  # the build's one thread is its own: the caller (a run) keeps its count
    assert list(built) == ["rgm-small/hopper/random-v0"] and built["rgm-small/hopper/random-v0"]["steps"] >= 500
    local = minari.list_local_datasets()
    assert "rgm-small/hopper/random-v0" in local and "rgm/hopper/random-v0" not in local
    calls = []
    monkeypatch.setattr(build_mod, "rollouts", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match="rgm-<name>"):
        build_mod.build_env("hopper", levels=["random"], namespace="mujoco")
    with pytest.raises(ValueError, match="--namespace 'mujoco'"):
        build_mod.main(["--env", "hopper", "--levels", "random", "--namespace", "mujoco"])
    assert calls == []


def test_recipe_builds_missing_datasets_in_its_local_namespace(monkeypatch):
    from hydra import compose, initialize_config_dir

    from torchrl_rgm import sources

    calls = []
    monkeypatch.setattr(build_mod, "build_env", lambda env, **kw: calls.append((env, kw)) or {})
    monkeypatch.setattr(sources, "load_rgm_data", lambda *ids, **kw: ids)
    config_dir = Path(__file__).resolve().parents[2] / "recipes" / "config"
    for namespace, builds in (("rgm-small", True), ("mujoco", False)):
        calls.clear()
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            cfg = compose("rgm_mujoco", overrides=[f"dataset.namespace={namespace}", "dataset.build_scale=0.1"])
        assert sources.make_source(cfg).load() == (f"{namespace}/hopper/medium-replay-v0", f"{namespace}/hopper/expert-v0")
        if builds:
            jobs = min(2, len(os.sched_getaffinity(0)))  # the two levels roll out side by side where there are cores
            assert calls == [("hopper", {"levels": ["expert", "medium-replay"], "scale": 0.1, "namespace": namespace,
                                         "jobs": jobs})]
        else:  # a hub namespace downloads through Minari; nothing is built
            assert calls == []
