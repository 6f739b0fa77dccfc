"""Absorbing states for terminal transitions (as in DAC / ValueDICE / the RGM reference)."""
from __future__ import annotations

import torch
from tensordict import TensorDictBase

from .._keys import NEXT_OBS, OBS

__all__ = ["add_absorbing_states", "absorbing_observation", "with_indicator"]


def with_indicator(obs: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """Append the absorbing indicator dimension (0 for real states)."""
    return torch.cat([obs, torch.full_like(obs[..., :1], value)], -1)


def absorbing_observation(obs_dim: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The absorbing state: zeros (the mean, once observations are z-scored) and indicator 1."""
    s = torch.zeros(obs_dim + 1, dtype=dtype, device=device)
    s[-1] = 1.0
    return s


def add_absorbing_states(td: TensorDictBase, *, terminal_loop: bool = True, terminal_done: bool = False) -> TensorDictBase:
    """Give every observation an indicator dimension and make terminals lead to an absorbing state.

    A terminal transition ``(s, a, r, s', done=1)`` becomes ``(s, a, r, s_abs, done=0)`` plus a
    self-loop ``(s_abs, a, 0, s_abs, done=d)``; other transitions keep their ``s'``. With
    ``terminal_done=True`` (the authors' code) the terminal transition keeps ``done=1`` next to its
    swapped-in ``s_abs``: its target is then ``r`` alone, and the absorbing state's value is learnt
    from the self-loops only. With
    ``terminal_loop=True`` (the RGM reference) ``d = 1``, so ``V(s_abs)`` is one step of the
    absorbing reward; with ``False`` (DAC / ValueDICE) ``d = 0`` and the absorbing state lasts
    forever, ``V(s_abs) = r_abs / (1 - γ)``: a correction of the absorbing reward then weighs as
    much as the whole future that termination forfeits. Timeouts must have been dropped first
    (they are not terminals).
    """
    td = td.clone()
    obs_dim = td.get(OBS).shape[-1]
    terminal = td.get(("next", "terminated")).reshape(-1).bool()
    td.set(OBS, with_indicator(td.get(OBS)))
    next_obs = with_indicator(td.get(NEXT_OBS))
    absorbing = absorbing_observation(obs_dim, next_obs.dtype, next_obs.device)
    next_obs[terminal] = absorbing
    td.set(NEXT_OBS, next_obs)
    if not terminal_done:
        for key in (("next", "done"), ("next", "terminated")):
            td.set(key, torch.zeros_like(td.get(key)))
    loops = td[terminal].clone()
    n = loops.shape[0]
    loops.set(OBS, absorbing.expand(n, -1).clone())
    loops.set(NEXT_OBS, absorbing.expand(n, -1).clone())
    loops.set(("next", "reward"), torch.zeros_like(loops.get(("next", "reward"))))
    for key in (("next", "done"), ("next", "terminated")):
        loops.set(key, torch.full_like(loops.get(key), bool(terminal_loop)))
    td.set("absorbing", torch.zeros(td.shape[0], 1, dtype=torch.bool))
    loops.set("absorbing", torch.ones(n, 1, dtype=torch.bool))
    return torch.cat([td, loops], 0)
