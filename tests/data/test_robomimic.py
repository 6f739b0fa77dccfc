"""robomimic files: generation, the loader (checked against robomimic's SequenceDataset), RGM's buffers,
the evaluation env, bad files. Select with ``pytest -k robomimic``."""
import hashlib
import json

import h5py
import numpy as np
import pytest
import torch

from tests.conftest import requires
from torchrl_rgm.data import load_rgm_data
from torchrl_rgm.data.robomimic import (DEFAULT_OBS_KEYS, RobomimicFileError, env_meta_from_file, read_transitions)

KEYS = DEFAULT_OBS_KEYS


@pytest.fixture(scope="module")
def lift(tmp_path_factory):
    """Tiny generated Lift files: 3 ph demos, 6 mg episodes."""
    requires("robosuite")
    from torchrl_rgm.generation.robomimic_build import build_task

    root = tmp_path_factory.mktemp("robomimic")
    summary = build_task("lift", root=root, ph_episodes=3, mg_episodes=6, seed=0, log=lambda *_: None)
    return root, summary


def _sha(path):
    return hashlib.sha1(open(path, "rb").read()).hexdigest()


def test_robomimic_build_layout_and_success(lift):
    root, summary = lift
    with h5py.File(summary["ph"]["path"]) as f:
        demos = sorted(f["data"].keys())
        assert demos == ["demo_0", "demo_1", "demo_2"]
        assert json.loads(f["data"].attrs["env_args"])["env_name"] == "Lift"
        total = 0
        for d in demos:
            g = f["data"][d]
            T = g["actions"].shape[0]
            total += T
            assert g.attrs["num_samples"] == T and g["actions"].shape == (T, 7)
            assert np.abs(g["actions"][()]).max() <= 1.0
            assert {k: g["obs"][k].shape[1] for k in KEYS} == {"robot0_eef_pos": 3, "robot0_eef_quat": 4,
                                                               "robot0_gripper_qpos": 2, "object": 10}
            # ph demos all end at their first success: sparse reward 1 and done there, 0 before
            assert g["rewards"][-1] == 1 and g["dones"][-1] == 1
            assert not g["rewards"][:-1].any() and not g["dones"][:-1].any()
            # next_obs is the following obs
            np.testing.assert_array_equal(g["next_obs/object"][:-1], g["obs/object"][1:])
        assert f["data"].attrs["total"] == total
        masks = {k: {n.decode() for n in f[f"mask/{k}"][()]} for k in f["mask"]}
        assert masks["train"] | masks["valid"] == set(demos) and not masks["train"] & masks["valid"]
    assert summary["ph"]["success_rate"] == 1.0
    with h5py.File(summary["mg"]["path"]) as f:
        succ = {d: bool(f["data"][d]["dones"][-1]) for d in f["data"]}
        masks = {k: {n.decode() for n in f[f"mask/{k}"][()]} for k in f["mask"]}
        assert masks["success"] == {d for d, s in succ.items() if s}
        assert masks["failure"] == {d for d, s in succ.items() if not s}
        qualities = [f["data"][d].attrs["quality"] for d in f["data"]]
        assert min(qualities) < max(qualities)  # controllers of different quality
    assert summary["mg"]["episodes"] == 6


def test_robomimic_build_same_seed_same_files_any_jobs(lift, tmp_path):
    from torchrl_rgm.generation.robomimic_build import build_task

    root, summary = lift
    again = build_task("lift", root=tmp_path, ph_episodes=3, mg_episodes=6, seed=0, jobs=2, log=lambda *_: None)
    for d in ("ph", "mg"):
        assert _sha(again[d]["path"]) == _sha(summary[d]["path"])
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_task("lift", root=tmp_path, ph_episodes=3, mg_episodes=6, log=lambda *_: None)
    other = build_task("lift", root=tmp_path / "s1", datasets=["mg"], mg_episodes=6, seed=1, log=lambda *_: None)
    assert _sha(other["mg"]["path"]) != _sha(summary["mg"]["path"])


def test_robomimic_loader_matches_sequence_dataset(lift):
    """Transition by transition against robomimic's own reader of the same file."""
    requires("robomimic")
    import robomimic.utils.file_utils as FileUtils
    import robomimic.utils.obs_utils as ObsUtils
    from robomimic.utils.dataset import SequenceDataset

    root, summary = lift
    ObsUtils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": list(KEYS)}})
    for d in ("ph", "mg"):
        path = summary[d]["path"]
        ds = SequenceDataset(hdf5_path=path, obs_keys=KEYS, dataset_keys=("actions", "rewards", "dones"),
                             load_next_obs=True, frame_stack=1, seq_length=1, pad_frame_stack=True,
                             pad_seq_length=True, get_pad_mask=False, goal_mode=None, hdf5_cache_mode="all",
                             hdf5_use_swmr=True, hdf5_normalize_obs=False, filter_by_attribute=None)
        td = read_transitions(path, KEYS)
        assert len(ds) == td.shape[0] == summary[d]["transitions"]
        for i in range(len(ds)):
            item = ds[i]
            obs = np.concatenate([item["obs"][k][0] for k in KEYS])
            nxt = np.concatenate([item["next_obs"][k][0] for k in KEYS])
            np.testing.assert_allclose(td["observation"][i].numpy(), obs, rtol=0, atol=1e-6)
            np.testing.assert_allclose(td["next", "observation"][i].numpy(), nxt, rtol=0, atol=1e-6)
            np.testing.assert_allclose(td["action"][i].numpy(), item["actions"][0], rtol=0, atol=1e-6)
            assert td["next", "reward"][i].item() == item["rewards"][0]
            assert td["next", "terminated"][i].item() == bool(item["dones"][0])
        assert env_meta_from_file(path) == FileUtils.get_env_metadata_from_dataset(path)
        # episodes: a failed one ends in a timeout (truncated), a successful one in a terminal
        last = td["next", "done"].squeeze(-1)
        assert int(last.sum()) == summary[d]["episodes"]
        assert (td["next", "terminated"] ^ td["next", "truncated"])[last].all()


def test_robomimic_rgm_buffers(lift, tmp_path):
    root, summary = lift
    data = load_rgm_data(summary["mg"]["path"], summary["ph"]["path"], n_expert_trajectories=2, cache_dir=tmp_path)
    raw_expert = read_transitions(summary["ph"]["path"])
    n_expert = int((raw_expert["episode"] < 2).sum())
    union = data.union[~data.union["absorbing"].squeeze(-1)]
    assert int(union["is_expert"].sum()) == n_expert  # the 2 demos joined the union
    assert data.expert["absorbing"].any()  # success is a terminal → absorbing state
    assert data.obs_dim == sum((3, 4, 2, 10)) + 1  # + absorbing indicator
    assert data.initial_observation.shape[0] == 6 + 2
    # scores are success rates: ph 100 %, mg = its success mask's share
    assert data.normalized_score(np.array([1.0, 0.0])).tolist() == [100.0, 0.0]
    assert data.info["env_meta"]["env_name"] == "Lift" and data.info["obs_keys"] == list(KEYS)
    # the cache is keyed on the observation keys too
    fewer = load_rgm_data(summary["mg"]["path"], summary["ph"]["path"], n_expert_trajectories=2, cache_dir=tmp_path,
                          obs_keys=["object"])
    assert fewer.obs_dim == 10 + 1


def test_robomimic_env_replays_a_demo(lift):
    """The env made from the file's metadata is the env the data came from: same reset, same outcome."""
    from torchrl.envs.utils import check_env_specs

    from torchrl_rgm.data.robomimic import RobomimicEnv, make_torchrl_env

    root, summary = lift
    path = summary["ph"]["path"]
    env = RobomimicEnv(env_meta_from_file(path), KEYS, horizon=400)
    td = read_transitions(path, KEYS)
    with h5py.File(path) as f:
        g = f["data/demo_1"]
        obs, _ = env.reset(seed=int(g.attrs["reset_seed"]))
        np.testing.assert_allclose(obs, td[td["episode"] == 1]["observation"][0].numpy(), atol=1e-6)
        for t, action in enumerate(g["actions"][()]):
            obs, reward, terminated, truncated, info = env.step(action)
            assert reward == g["rewards"][t] and terminated == bool(g["dones"][t])
        assert terminated and info["success"]
    env.close()
    torchrl_env = make_torchrl_env(path, horizon=5)
    check_env_specs(torchrl_env)
    rollout = torchrl_env.rollout(10)
    assert rollout.shape == (5,) and rollout["next", "truncated"][-1].item()


def _write(path, demos):
    with h5py.File(path, "w") as f:
        for name, arrays in demos.items():
            for key, value in arrays.items():
                f.create_dataset(f"data/{name}/{key}", data=value)
        if demos:
            f["data"].attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})


def _demo(T=5, missing=(), short=None):
    rng = np.random.default_rng(0)
    demo = {"actions": rng.uniform(-1, 1, (T, 7)), "rewards": np.zeros(T), "dones": np.zeros(T)}
    for group in ("obs", "next_obs"):
        for key, dim in zip(KEYS, (3, 4, 2, 10)):
            if key not in missing:
                demo[f"{group}/{key}"] = rng.normal(size=(T if key != short else T - 1, dim))
    return demo


@pytest.mark.parametrize("case, match", [
    ("no_data", "has no 'data' group"),
    ("missing_key", r"lacks observation keys \['object'\]"),
    ("short", "has 5 actions but lengths"),
    ("no_actions", r"lacks \['actions'\]"),
    ("not_hdf5", "not a readable HDF5 file"),
    ("missing_file", "does not exist"),
])
def test_robomimic_bad_files_one_clear_error(tmp_path, case, match):
    path = tmp_path / "bad.hdf5"
    if case == "no_data":
        with h5py.File(path, "w") as f:
            f.create_dataset("actions", data=np.zeros((3, 7)))
    elif case == "missing_key":
        _write(path, {"demo_0": _demo(), "demo_1": _demo(missing=("object",))})
    elif case == "short":
        _write(path, {"demo_0": _demo(short="robot0_eef_quat")})
    elif case == "no_actions":
        demo = _demo()
        del demo["actions"]
        _write(path, {"demo_0": demo})
    elif case == "not_hdf5":
        path.write_text("not an hdf5 file")
    with pytest.raises((RobomimicFileError, FileNotFoundError), match=match) as err:
        read_transitions(path, KEYS)
    assert str(path) in str(err.value)
    if case == "missing_key":
        assert "data/demo_1/obs" in str(err.value)


def test_robomimic_handwritten_file_reads_exactly(tmp_path):
    """Without robosuite: a file written here by hand reads back value for value, episodes in demo order."""
    path = tmp_path / "hand.hdf5"
    a, b = _demo(T=4), _demo(T=3)
    b["dones"] = np.array([0, 0, 1])
    b["rewards"] = np.array([0.0, 0.0, 1.0])
    _write(path, {"demo_10": a, "demo_2": b})  # robomimic orders demos by number, not by name
    td = read_transitions(path, KEYS)
    assert td["episode"].tolist() == [2, 2, 2, 10, 10, 10, 10]
    expect = np.concatenate([b[f"obs/{k}"] for k in KEYS], -1)
    np.testing.assert_allclose(td["observation"][:3].numpy(), expect, atol=1e-6)
    assert td["next", "terminated"].squeeze(-1).tolist() == [False, False, True, False, False, False, False]
    assert td["next", "truncated"].squeeze(-1).tolist() == [False] * 6 + [True]
    assert td["episode_return"].tolist() == [1, 1, 1, 0, 0, 0, 0]
    with pytest.raises(RobomimicFileError, match="no filter key 'train'"):
        read_transitions(path, KEYS, filter_key="train")
    assert torch.equal(td["transition_id"], torch.arange(7))


def test_robomimic_can_pick_and_place_demo(tmp_path):
    """The scripted controller also solves Can (pick, carry to the bin, release): a ph demo succeeds."""
    requires("robosuite")
    from torchrl_rgm.generation.robomimic_build import build_task

    summary = build_task("can", root=tmp_path, datasets=["ph"], ph_episodes=1, log=lambda *_: None)
    assert summary["ph"]["controller_success_rate"] > 0
    with h5py.File(summary["ph"]["path"]) as f:
        assert json.loads(f["data"].attrs["env_args"])["env_name"] == "PickPlaceCan"
        g = f["data/demo_0"]
        assert g["obs/object"].shape[1] == 14 and g["rewards"][-1] == 1 and g["dones"][-1] == 1
