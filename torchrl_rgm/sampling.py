"""How the recipes sample: TorchRL's :class:`~torchrl.data.TensorDictReplayBuffer` over the union, with a storage and a
sampler that make a batch cost one index draw and one gather.

:class:`FlatTensorStorage` keeps the union as one contiguous ``[N, D]`` tensor on the training device (every entry a
column block; booleans stored as 0/1 and restored) and answers ``get(index)`` with a single ``index_select`` whose
column blocks become the batch's entries (views, no copies), where indexing a TensorDict of seven entries costs
seven gathers and their bookkeeping. ``benchmarks/sampling_cost.py`` measures both paths against an update step.
:class:`SeededRandomSampler` draws the indices from its own generator, whose state is the checkpoint's, so a resumed
run draws the same batches. :class:`UnionReplayBuffer` adds the initial observations ``s0 ~ mu0`` the DICE value loss
needs, drawn from the same generator.
"""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import TensorDictReplayBuffer, TensorStorage
from torchrl.data.replay_buffers import Sampler

__all__ = ["FlatTensorStorage", "SeededRandomSampler", "UnionReplayBuffer", "UNION_KEYS", "averaged_extraction"]

#: The union's entries a training batch carries.
UNION_KEYS = ("observation", "action", ("next", "observation"), ("next", "reward"), ("next", "done"), "is_expert",
              "log_density_ratio")


class FlatTensorStorage(TensorStorage):
    """A read-only TorchRL storage over a TensorDict of transitions, kept as one contiguous float tensor on
    ``device``; :meth:`get` is one gather. Entries must be numeric with a leading transition dimension."""

    def __init__(self, transitions: TensorDictBase, device="cpu"):
        transitions = transitions.to_tensordict() if not isinstance(transitions, TensorDict) else transitions
        super().__init__(transitions, device=device)
        n = transitions.shape[0]
        self._keys = list(transitions.keys(True, True))
        leaves = [transitions.get(k) for k in self._keys]
        self._dtypes = [v.dtype for v in leaves]
        self._shapes = [v.shape[1:] for v in leaves]
        self._widths = [v.reshape(n, -1).shape[1] for v in leaves]
        self._flat = torch.cat([v.reshape(n, -1).to(torch.float32) for v in leaves], 1).to(device).contiguous()

    def get(self, index) -> TensorDict:
        if not isinstance(index, torch.Tensor):
            return super().get(index)
        rows = self._flat.index_select(0, index.to(self._flat.device)).split(self._widths, 1)
        return TensorDict({k: (r if dt == torch.float32 else r.to(dt)).reshape(-1, *shape)
                           for k, r, dt, shape in zip(self._keys, rows, self._dtypes, self._shapes)},
                          [index.shape[0]], device=self._flat.device)


class SeededRandomSampler(Sampler):
    """Uniform indices with replacement from one seeded generator (on ``device``), checkpointed by
    :meth:`state_dict`."""

    def __init__(self, seed: int = 0, device="cpu"):
        super().__init__()
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def sample(self, storage, batch_size: int) -> tuple[torch.Tensor, dict]:
        return torch.randint(len(storage), (batch_size,), generator=self.generator, device=self.device), {}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def _empty(self):
        pass

    def dumps(self, path):
        pass

    def loads(self, path):
        pass


def _checked_weights(weights: torch.Tensor) -> torch.Tensor:
    """``weights`` flat in float64, refused unless finite, non-negative and not all zero."""
    w = weights.reshape(-1).detach().to(torch.float64)
    if not torch.isfinite(w).all() or (w < 0).any() or not w.sum() > 0:
        raise ValueError("extraction weights must be finite, non-negative and not all zero.")
    return w


def averaged_extraction(weights: torch.Tensor, previous: torch.Tensor | None, refresh: int) -> torch.Tensor:
    r"""The running mean of the extraction distributions of refreshes ``1..refresh``: ``weights`` normalised
    (refresh ``k = refresh``'s ``w d^D``) averaged with ``previous`` (the mean of the ``k - 1`` before, ``None`` or
    ignored at ``k = 1``): :math:`\bar p_k = \bar p_{k-1} + (p_k - \bar p_{k-1}) / k`.

    Polyak-Ruppert averaging of the lower level's iterates: each ``w_k d^D`` is (up to the estimate's error) a
    visitation, the flow constraint is linear, so their mixture is one too; where ``w`` fluctuates between refreshes
    with ``V``'s noise the actor's target converges instead of moving with it. Needs no state beyond the current
    distribution and the refresh count, so a resumed run continues the same mean."""
    if refresh < 1:
        raise ValueError(f"refresh must be ≥ 1, got {refresh}.")
    w = _checked_weights(weights)
    p = w / w.sum()
    if previous is None or refresh == 1:
        return p
    previous = previous.reshape(-1).to(torch.float64)
    if previous.numel() != p.numel():
        raise ValueError(f"previous distribution has {previous.numel()} values for {p.numel()} rows.")
    return previous + (p - previous) / refresh


class UnionReplayBuffer(TensorDictReplayBuffer):
    """The union ``D`` as a TorchRL replay buffer: ``sample()`` gives ``batch_size`` transitions (:data:`UNION_KEYS`
    that the union has) each with an ``initial_observation`` drawn from ``mu0``, all from one seeded generator.

    Its :attr:`sampler`'s state is what a checkpoint keeps (the data are the run's dataset, not its state).
    """

    def __init__(self, union: TensorDictBase, initial_observation: torch.Tensor, batch_size: int, *, seed: int = 0,
                 device="cpu"):
        if batch_size > union.shape[0]:
            raise ValueError(f"batch_size {batch_size} is larger than the union ({union.shape[0]} transitions).")
        keys = [k for k in UNION_KEYS if k in union.keys(True)]
        super().__init__(storage=FlatTensorStorage(union.select(*keys), device=device),
                         sampler=SeededRandomSampler(seed, device), batch_size=batch_size)
        self.initial = initial_observation.to(device)
        self._extraction_cdf = None

    def set_extraction_weights(self, weights: torch.Tensor | None) -> None:
        """From now on each batch also carries ``"extraction"``: as many rows again, drawn with replacement in
        proportion to ``weights`` (one per row, ≥ 0), for policy extraction — ``E_D[w ℓ] / E_D[w] = E_{w d^D}[ℓ]``
        estimated from rows of ``w d^D`` rather than from a uniform batch weighted by ``w``, whose weight can sit on a
        handful of its rows. ``None`` stops it."""
        if weights is None:
            self._extraction_cdf = None
            return
        w = weights.reshape(-1).detach().to(torch.float64)
        if w.numel() != len(self._storage):
            raise ValueError(f"extraction weights: {w.numel()} values for {len(self._storage)} rows.")
        w = _checked_weights(w)
        cdf = w.cumsum(0)
        self._extraction_cdf = (cdf / cdf[-1]).to(self._sampler.device)

    def extraction_distribution(self) -> torch.Tensor | None:
        """The probabilities the extraction rows are drawn with now (float64, summing to 1), or ``None`` when unset."""
        if self._extraction_cdf is None:
            return None
        cdf = self._extraction_cdf.cpu()
        return torch.cat([cdf[:1], cdf[1:] - cdf[:-1]]).clamp(min=0.0)

    def sampling_state(self) -> dict:
        """Where the batch stream stands (the sampler's generator, and the extraction weights' distribution when set):
        what a checkpoint keeps."""
        state = self._sampler.state_dict()
        if self._extraction_cdf is not None:
            state["extraction_cdf"] = self._extraction_cdf.cpu()
        return state

    def load_sampling_state(self, state: dict) -> None:
        self._sampler.load_state_dict(state)
        cdf = state.get("extraction_cdf")
        self._extraction_cdf = None if cdf is None else cdf.to(self._sampler.device)

    def sample(self, *args, **kwargs) -> TensorDictBase:
        batch = super().sample(*args, **kwargs)
        generator = self._sampler.generator
        idx0 = torch.randint(self.initial.shape[0], (batch.shape[0],), generator=generator, device=generator.device)
        batch.set("initial_observation", self.initial[idx0])
        if self._extraction_cdf is not None:
            u = torch.rand(batch.shape[0], generator=generator, device=generator.device, dtype=torch.float64)
            rows = torch.searchsorted(self._extraction_cdf, u).clamp_(max=self._extraction_cdf.numel() - 1)
            batch.set("extraction", self._storage.get(rows))
        return batch
