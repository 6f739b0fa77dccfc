"""What a recipe checks before it works: the command line's overrides (group options Hydra misreads, keys the
configuration does not have) before Hydra composes, and the loaded data (right after loading, before the
discriminator). :mod:`torchrl_rgm.run` re-exports them."""
from __future__ import annotations

import difflib
import warnings
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError
from .report import dataset_score

__all__ = ["CONFIG_GROUPS", "OPEN_MAPPINGS", "MIN_EXPERT_TRANSITIONS", "REFERENCE_SCORE_LIMIT", "check_group_overrides",
           "check_override_keys", "check_data"]

#: The Hydra config groups of the recipes (``group=option`` on the command line).
CONFIG_GROUPS = ("env", "dataset", "reward", "algo", "logger", "protocol")


#: Mappings whose keys are the callee's to check (a reward setting's keyword arguments): ``+reward.kwargs.p=...``.
OPEN_MAPPINGS = ("kwargs",)


def check_group_overrides(argv: list[str], config_dir: Path, config_name: str | None = None) -> None:
    """Before Hydra composes: ``reward=true`` (and any group set to a YAML boolean or null) is read by Hydra as a
    boolean, not an option name, and fails with a traceback; say so, with the group's options. With ``config_name``,
    also :func:`check_override_keys`."""
    _check_group_values(argv, config_dir)
    if config_name is not None:
        check_override_keys(argv, config_dir, config_name)


def check_override_keys(argv: list[str], config_dir: Path, config_name: str) -> None:
    """Every ``key=value`` and ``+key=value`` override must name a key the configuration has (keys under a
    ``kwargs`` mapping excepted: their reader checks them). Hydra refuses ``budget.update=10`` with the hint "use
    +budget.update=10", and that adds a key nobody reads: the run would train the default budget. One message,
    with the keys that are there and the nearest one, before anything runs."""
    def is_choice(arg):  # a group's option (reward=partial, +algo@x=...), a deletion (~key) or Hydra's own
        key = arg.lstrip("+").partition("=")[0].split("@")[0]
        return arg.startswith("~") or key in CONFIG_GROUPS or key.split(".")[0].split("/")[0] == "hydra"

    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    keyed = [a for a in overrides if not is_choice(a)]
    if not keyed or GlobalHydra.instance().is_initialized():
        return
    groups = [a for a in overrides if a not in keyed and not a.lstrip("+").startswith("hydra")]
    try:  # the configuration the group choices make, without the keyed overrides
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            cfg = compose(config_name, overrides=groups)
    except Exception:  # noqa: BLE001 - a bad group choice: Hydra's own message says which
        return
    for arg in keyed:
        key = arg.lstrip("+").partition("=")[0]
        parts = key.split(".")
        if any(p in OPEN_MAPPINGS for p in parts[:-1]) or OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING:
            continue
        parent = ".".join(parts[:-1])
        node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
        known = sorted(node.keys()) if isinstance(node, DictConfig) else []
        near = difflib.get_close_matches(parts[-1], known, n=1)
        where = f"{parent} has {known}" if parent else f"the top level has {known}"
        if parent and not isinstance(node, DictConfig):
            where = f"{parent} is {'not there' if node is None else 'not a mapping'}"
        raise ConfigError(f"{arg}: the configuration has no key {key!r} ({where})"
                          + (f"; did you mean {'.'.join([*parts[:-1], near[0]])}?" if near else ".")
                          + (" A '+' would add a key nothing reads, and the run would silently use the default."
                             if arg.startswith("+") else ""))


_MISSING = object()


def _check_group_values(argv: list[str], config_dir: Path) -> None:
    for arg in argv:
        group, _, value = arg.partition("=")
        if group in CONFIG_GROUPS and value.lower() in ("true", "false", "yes", "no", "on", "off", "null", "~"):
            options = sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
            hint = " (the dataset's own reward is reward=true_reward)" if group == "reward" else ""
            raise ConfigError(f"{arg}: Hydra reads {value!r} as a {'null' if value in ('null', '~') else 'boolean'}, "
                              f"not an option of {group}; the options are {options}{hint}.")


#: Fewer real (non-absorbing) expert transitions than this cannot tell the expert's visitation from the union's.
MIN_EXPERT_TRANSITIONS = 10
#: A dataset's own episodes normalising beyond this (in either direction): its reference scores do not fit its reward.
REFERENCE_SCORE_LIMIT = 1000.0


def check_data(cfg: DictConfig, data) -> None:
    """What needs the loaded data but no training work, run right after loading (before the discriminator): the
    batch fits in the union, the expert data has more than a few real steps, the scores can be normalised (the
    datasets' ``ref_min_score``/``ref_max_score``), and a warning where the data's own episodes normalise to
    scores beyond ±:data:`REFERENCE_SCORE_LIMIT` (the reference scores do not fit this reward's scale)."""
    if cfg.algo.batch_size > data.union.shape[0]:
        raise ConfigError(f"algo.batch_size={cfg.algo.batch_size} is larger than the union ({data.union.shape[0]} "
                          f"transitions of {data.union_id}); use a smaller algo.batch_size or a larger dataset.")
    expert = data.expert
    real = int((~expert.get("absorbing").reshape(-1)).sum()) if "absorbing" in expert.keys() else expert.shape[0]
    if real < MIN_EXPERT_TRANSITIONS:
        raise ConfigError(f"the expert data ({data.expert_id}) holds {real} real transition(s), too few to tell the "
                          f"expert's visitation from the union's (at least {MIN_EXPERT_TRANSITIONS}); use longer or "
                          "more expert trajectories (dataset.n_expert_trajectories).")
    if data.ref_min_score is None or data.ref_max_score is None:
        raise ConfigError(f"{data.union_id} has no ref_min_score/ref_max_score in its metadata, so no evaluation "
                          "can be normalised (the run would fail at its first evaluation). Give the dataset the mean "
                          "returns of a random and of an expert policy: minari.create_dataset_from_buffers(..., "
                          "ref_min_score=..., ref_max_score=...), or set them in its metadata.json.")
    if data.ref_max_score == data.ref_min_score:
        raise ConfigError(f"{data.union_id}: ref_min_score = ref_max_score = {data.ref_min_score}: scores cannot be "
                          "normalised; fix the dataset's reference scores.")
    for name, td in (("union", data.union[~data.union.get("is_expert").reshape(-1)]), ("expert", data.expert)):
        try:
            score = dataset_score(data, td)
        except (KeyError, ValueError):  # no per-episode returns in this source: nothing to compare
            continue
        if abs(score) > REFERENCE_SCORE_LIMIT:
            warnings.warn(f"the {name} data's own episodes score {score:,.0f} normalised with {data.union_id}'s "
                          f"reference scores ({data.ref_min_score:g}, {data.ref_max_score:g}): they do not fit this "
                          "data's reward scale, and every score printed will be in those units. Check the dataset's "
                          "ref_min_score/ref_max_score or its rewards' scale.", stacklevel=2)
