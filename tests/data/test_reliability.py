"""Reliability of the data layer (issue 18): NaN in stored infos, the cache key, concurrent builds, strict JSON."""
import dataclasses
import json
import math
import os
import threading
import time

import numpy as np
import pytest

from torchrl_rgm.data import load_rgm_data, load_transitions
from torchrl_rgm.data.pipeline import DatasetError
from torchrl_rgm.generation import build as build_mod
from torchrl_rgm.generation.build import rollouts, write_dataset
from torchrl_rgm.report import write_json


def test_nan_in_the_infos_a_reward_reads_is_refused_at_load():
    """reward=other_task computes the reward from the stored per-step infos: a NaN there must not train."""
    episodes = rollouts("hopper", [(None, 0.0, 1.0)], 200, 0, "tiny", max_episode_steps=40)
    episodes[1].infos["reward_forward"][5] = np.nan
    write_dataset("rgm/hopper/nan-v0", episodes, "hopper", -10.0, 100.0, "NaN in an info", overwrite=False)
    load_rgm_data("rgm/hopper/nan-v0", "rgm/hopper/nan-v0", n_expert_trajectories=1, reward="negated")  # unread
    with pytest.raises(DatasetError, match=r"rgm/hopper/nan-v0: 1 transitions have NaN/inf in \('next', 'reward'\) "
                                           r"after the 'other_task' reward"):
        load_rgm_data("rgm/hopper/nan-v0", "rgm/hopper/nan-v0", n_expert_trajectories=1, reward="other_task")


def test_a_file_rewritten_with_the_same_size_and_mtime_is_converted_again(tmp_path):
    episodes = rollouts("hopper", [(None, 0.0, 1.0)], 100, 0, "tiny", max_episode_steps=30)
    path = write_dataset("rgm/hopper/same-v0", episodes, "hopper", -10.0, 100.0, "cache key", overwrite=False)
    first = load_transitions("rgm/hopper/same-v0")
    data_file = next(path.rglob("main_data*"))
    st = data_file.stat()
    blob = bytearray(data_file.read_bytes())
    data_file.write_bytes(bytes(blob))  # same bytes, same size: a rewrite
    os.utime(data_file, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old modification time
    entries = tmp_path / "cache" / "transitions" / "rgm__hopper__same-v0"
    before = {p.name for p in entries.iterdir()}
    load_transitions("rgm/hopper/same-v0")
    assert len({p.name for p in entries.iterdir()} - before) == 1  # a new cache entry, not the stale one
    assert first.shape[0] > 0


def test_concurrent_builds_of_one_environment_take_turns(monkeypatch):
    """Two processes (here threads) missing the same datasets: the second waits for the first instead of failing."""
    spans, built = [], set()

    def fake_build(env, levels, scale, namespace, jobs=1):
        start = time.time()
        time.sleep(0.3)
        built.update(levels)
        spans.append((start, time.time()))

    monkeypatch.setattr(build_mod, "build_env", fake_build)
    monkeypatch.setattr(build_mod.minari, "list_local_datasets",
                        lambda: {build_mod.dataset_id("hopper", lv, "rgm-x") for lv in built})
    threads = [threading.Thread(target=build_mod.build_missing, args=("hopper", ["random"]),
                                kwargs={"namespace": "rgm-x", "log": lambda *_: None}) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(spans) == 1  # the second found the dataset built once the lock was free


def test_summary_json_is_strict(tmp_path):
    write_json({"final": float("nan"), "best": 3.0, "per_source": {"a": {"w": float("inf")}}}, tmp_path / "s.json")
    text = (tmp_path / "s.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"final": None, "best": 3.0,
                                                                         "per_source": {"a": {"w": None}}}
    assert not math.isnan(3.0)


def test_a_conversion_finished_by_another_process_meanwhile_is_kept_whole(tiny, monkeypatch):
    """Two runs convert the same data at once (a grid's first runs): the one that finishes second must neither
    delete nor replace the first one's cache entry piece by piece (a run reading it then would find the metadata
    without the tensors)."""
    from torchrl_rgm.data import minari as mod

    real_process, real_replace, real_rmtree = mod._process, os.replace, mod.shutil.rmtree
    broken = []

    def what_a_reader_sees_now():
        for entry in (mod.cache_root() / "processed").glob("*"):
            if (entry / "rgm_meta.json").exists() and not (entry / "tensors" / "meta.json").exists():
                broken.append(entry.name)

    def process_while_another_finishes(*args, **kwargs):
        data = real_process(*args, **kwargs)
        monkeypatch.setattr(mod, "_process", real_process)
        load_rgm_data(tiny, n_expert_trajectories=1)  # the other process: converts and writes the entry
        return data

    def replace(src, dst):
        real_replace(src, dst)
        what_a_reader_sees_now()

    def rmtree(path, *args, **kwargs):
        real_rmtree(path, *args, **kwargs)
        what_a_reader_sees_now()

    monkeypatch.setattr(mod, "_process", process_while_another_finishes)
    monkeypatch.setattr(mod.os, "replace", replace)
    monkeypatch.setattr(mod.shutil, "rmtree", rmtree)
    data = load_rgm_data(tiny, n_expert_trajectories=1)
    monkeypatch.setattr(mod.os, "replace", real_replace)
    monkeypatch.setattr(mod.shutil, "rmtree", real_rmtree)
    assert not broken, f"a reader could have seen an entry without its tensors: {broken}"
    entries = [e.name for e in (mod.cache_root() / "processed").iterdir()]
    assert len(entries) == 1 and not entries[0].startswith(".tmp"), entries
    again = load_rgm_data(tiny, n_expert_trajectories=1)
    for key in ("observation", "action", ("next", "reward")):
        np.testing.assert_array_equal(np.asarray(again.union[key]), np.asarray(data.union[key]))


def test_an_entry_left_without_its_metadata_is_converted_again(tiny):
    """An older version wrote tensors first and the metadata last: an interrupted write left tensors alone."""
    from torchrl_rgm.data import minari as mod

    first = load_rgm_data(tiny, n_expert_trajectories=1)
    (entry,) = (mod.cache_root() / "processed").iterdir()
    (entry / "rgm_meta.json").unlink()
    again = load_rgm_data(tiny, n_expert_trajectories=1)
    assert (entry / "rgm_meta.json").exists() and (entry / "tensors" / "meta.json").exists()
    assert [e.name for e in (mod.cache_root() / "processed").iterdir()] == [entry.name]
    np.testing.assert_array_equal(np.asarray(again.union["observation"]), np.asarray(first.union["observation"]))


def test_a_conversion_killed_half_way_leaves_nothing_for_ever(tmp_path):
    """Issue 30 #6: a temporary cache entry whose process is gone (a conversion killed half-way) is removed by the
    next conversion in the same place; one a live process owns, or another host's, is left alone."""
    import socket
    import subprocess
    import sys

    from torchrl_rgm.data.minari import cache_root

    episodes = rollouts("hopper", [(None, 0.0, 1.0)], 120, 0, "tiny", max_episode_steps=30)
    write_dataset("rgm/hopper/stale-v0", episodes, "hopper", -10.0, 100.0, "stale temporaries", overwrite=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    parent = cache_root() / "processed"
    parent.mkdir(parents=True, exist_ok=True)
    names = {"dead": f".tmp-0123456789abcdef-p{dead.pid}@{host}-x1y2", "live": f".tmp-feed-p{os.getpid()}@{host}-a1",
             "other host": f".tmp-feed-p{dead.pid}@not-{host}-b2", "old unowned": ".tmp-0123456789abcdef-zz9"}
    for name in names.values():
        (parent / name / "tensors").mkdir(parents=True)
        (parent / name / "tensors" / "part.memmap").write_bytes(b"half")
    old = time.time() - 2 * 24 * 3600
    os.utime(parent / names["old unowned"], (old, old))
    load_rgm_data("rgm/hopper/stale-v0", "rgm/hopper/stale-v0", n_expert_trajectories=1)
    left = {p.name for p in parent.glob(".tmp-*")}
    assert left == {names["live"], names["other host"]}, left


def test_reference_scores_that_do_not_fit_the_rewards_are_named(recwarn):
    """Issue 30 #6: rewards 1e6 times the scale the reference scores were taken at print scores in the millions; the
    run warns, naming the dataset and its reference scores, right after loading."""
    from omegaconf import OmegaConf

    from torchrl_rgm.run import check_data

    cfg = OmegaConf.create({"algo": {"batch_size": 32}})
    for name, factor in (("fits", 1.0), ("scaled", 1e6)):
        episodes = rollouts("hopper", [(None, 0.0, 1.0)], 300, 0, "tiny", max_episode_steps=40)
        episodes = [dataclasses.replace(ep, rewards=[r * factor for r in ep.rewards]) for ep in episodes]
        write_dataset(f"rgm/hopper/{name}-v0", episodes, "hopper", -10.0, 100.0, "reward scale", overwrite=False)
        data = load_rgm_data(f"rgm/hopper/{name}-v0", f"rgm/hopper/{name}-v0", n_expert_trajectories=2)
        recwarn.clear()
        check_data(cfg, data)
        messages = [str(w.message) for w in recwarn if "reference scores" in str(w.message)]
        if factor == 1.0:
            assert not messages
        else:
            assert messages and "rgm/hopper/scaled-v0's reference scores (-10, 100)" in messages[0], messages
