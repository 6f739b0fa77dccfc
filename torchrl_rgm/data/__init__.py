"""Offline data for RGM: Minari datasets → TensorDicts, imperfect rewards, absorbing states."""
from .absorbing import add_absorbing_states
from .minari import DatasetNotFoundError, find_dataset, load_rgm_data, load_transitions
from .pipeline import RGMData
from .rewards import REWARD_SETTINGS, make_reward_transform

__all__ = [
    "DatasetNotFoundError",
    "REWARD_SETTINGS",
    "RGMData",
    "add_absorbing_states",
    "find_dataset",
    "load_rgm_data",
    "load_transitions",
    "make_reward_transform",
]
