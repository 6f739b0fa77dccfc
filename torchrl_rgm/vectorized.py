"""Many RGM runs in one process: their parameters stacked, one (compiled) update step for all of them.

:class:`VectorizedRGMUpdate` takes ``N`` :class:`~torchrl_rgm.train.RGMUpdate` s built alike (same networks'
shapes and hyper-parameters; different seeds, initial weights, data or reward settings) and trains them as one
program: the parameters are stacked with :func:`torch.func.stack_module_state`, the losses of all runs are one
:func:`torch.vmap` of :func:`torch.func.functional_call` over a template of the loss, and one Adam steps the stacked
parameters (Adam is elementwise, so each run's slice gets exactly the step it would get alone). Each run keeps what
makes it a run: its own batch (sampled by its own buffer), its own actor noise (drawn from its own update's
generator), and, after :meth:`VectorizedRGMUpdate.sync_to_runs`, its own networks, optimiser and schedule state,
so each run is evaluated, logged and checkpointed as a run trained alone, and resumes alone or in a group.

On a GPU this is how many small runs share one device (the 2x256 MLPs of the paper leave it mostly idle); on a
CPU the products are the same size per run, so packing mainly saves Python and dispatch overhead
(``benchmarks/update_throughput.py --vectorized N`` measures it).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from torch.func import functional_call, stack_module_state

from .train import RGMUpdate

__all__ = ["VectorizedRGMUpdate", "GroupError", "check_groupable"]

#: The loss's hyper-parameters every run of a group must share (they are Python numbers in the one template).
_LOSS_FIELDS = ("alpha", "gamma", "res_scale", "advantage_clip", "weight_clip", "normalize_weights",
                "correction_normalize_weights", "log_ratio_clip", "correction_anchor", "stochastic", "learn_entropy_coef", "use_entropy",
                "target_entropy")
#: Which stacked parameter belongs to which of RGMUpdate's optimiser groups.
_GROUP_OF = {"value_network.": "value", "actor_network.": "actor", "reward_correction_network.": "reward_correction",
             "log_entropy_coef": "entropy_coef"}


class _Template(torch.nn.Module):
    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def forward(self, batch):
        return self.loss(batch)


class GroupError(ValueError):
    """Runs that cannot be trained as one group (different shapes or hyper-parameters)."""


def _group_name(param_name: str) -> str:
    for prefix, group in _GROUP_OF.items():
        if param_name.startswith(prefix):
            return group
    raise GroupError(f"RGMLoss parameter {param_name!r} belongs to no optimiser group.")


def check_groupable(updates: Sequence[RGMUpdate], *, same_step: bool = True) -> None:
    """Raise :class:`GroupError` naming what differs if ``updates`` cannot be stepped as one group
    (``same_step=False``: runs that could once the ones behind catch up)."""
    if not updates:
        raise GroupError("A group needs at least one run.")
    first = updates[0]
    for i, u in enumerate(updates[1:], 1):
        if not isinstance(u, RGMUpdate):
            raise GroupError(f"run {i} is a {type(u).__name__}; only RGM updates (rgm, smodice) can be grouped.")
        differs = [f for f in _LOSS_FIELDS if getattr(u.rgm_loss, f, None) != getattr(first.rgm_loss, f, None)]
        if type(u.rgm_loss.divergence) is not type(first.rgm_loss.divergence):
            differs.append("divergence")
        shapes = {n: p.shape for n, p in u.rgm_loss.named_parameters()}
        if shapes != {n: p.shape for n, p in first.rgm_loss.named_parameters()}:
            differs.append("network shapes")
        if u.group_names != first.group_names:
            differs.append("networks learnt")
        for g0, g in zip(first.optimizer.param_groups, u.optimizer.param_groups):
            differs += [f"{g0['name']}.{k}" for k in ("initial_lr", "weight_decay") if g.get(k) != g0.get(k)]
        lambdas = lambda s: [getattr(fn, "total_steps", None) for fn in s.scheduler.lr_lambdas]  # noqa: E731
        if lambdas(u) != lambdas(first):
            differs.append("schedule horizons (budget.updates)")
        if same_step and u.scheduler.last_epoch != first.scheduler.last_epoch:
            differs.append("updates done so far")
        if (u.autocast_dtype, u.device_type) != (first.autocast_dtype, first.device_type):
            differs.append("precision/device")
        if differs:
            raise GroupError(f"run {i} differs from run 0 in {sorted(set(differs))}: a group trains runs that differ "
                             "only in seed, initial weights and data; train the others in a group of their own.")


class VectorizedRGMUpdate:
    """``N`` RGM runs stepped as one: ``group([batch_0, ..., batch_{N-1}])`` returns their metrics stacked ``[N]``.

    Args:
        updates: the runs' own update steps (built alike, e.g. by the same config with different seeds). They are
            not stepped by the group: call :meth:`sync_to_runs` before reading a run's networks, evaluating or
            checkpointing it. The group starts from the runs' current state (a resumed run's networks, optimiser,
            schedule and noise generator).

    Keyword Args:
        compile: :func:`torch.compile` the vectorised losses. compile_mode: passed to it.
    """

    def __init__(self, updates: Sequence[RGMUpdate], *, compile: bool = False, compile_mode: str | None = None):
        updates = list(updates)
        check_groupable(updates)
        self.updates = updates
        self.num_runs = len(updates)
        losses = [u.rgm_loss for u in updates]
        params, buffers = stack_module_state(losses)
        self.params = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
        self.buffers = {n: b.detach().clone() for n, b in buffers.items()}
        # functional_call reparametrises through the root's named_parameters(remove_duplicate=False), which
        # TorchRL's LossModule overrides without that argument: the template sits inside a plain container.
        self.template = _Template(copy.deepcopy(losses[0]))
        first = updates[0]
        self.autocast_dtype, self.device_type = first.autocast_dtype, first.device_type
        # one optimiser with the runs' groups (same lr, weight decay, schedule), over the stacked parameters
        groups = {g["name"]: g for g in first.optimizer.param_groups}
        self.names = {name: [n for n in self.params if _group_name(n) == name] for name in first.group_names}
        param_groups = [{"params": [self.params[n] for n in names], "lr": groups[name]["initial_lr"],
                         "weight_decay": groups[name]["weight_decay"], "name": name}
                        for name, names in self.names.items()]
        fused = self.device_type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(param_groups, fused=fused)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, [copy.deepcopy(fn) for fn in first.scheduler.lr_lambdas])
        self._load_runs_optimizer_state()
        self._losses = self._compute_losses
        if compile:
            self._losses = torch.compile(self._compute_losses, mode=compile_mode, dynamic=False)

    # ---- the step ---------------------------------------------------------------------------------------
    def _one_run(self, params, buffers, batch):
        with torch.autocast(self.device_type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            metrics = functional_call(self.template, ({"loss." + n: p for n, p in params.items()},
                                                      {"loss." + n: b for n, b in buffers.items()}), (batch,))
        total = sum(v for k, v in metrics.items() if k.startswith("loss_"))
        return total, metrics

    def _compute_losses(self, params, buffers, batch):
        totals, metrics = torch.vmap(self._one_run, in_dims=(0, 0, 0))(params, buffers, batch)
        return totals.sum(), metrics  # the runs are independent: d(sum)/d(run i's slice) = run i's own gradient

    def __call__(self, batches: Sequence[TensorDictBase]) -> TensorDictBase:
        """One update of every run, run ``i`` on ``batches[i]``; the detached metrics, batch size ``[N]``."""
        if len(batches) != self.num_runs:
            raise GroupError(f"{len(batches)} batches for a group of {self.num_runs} runs.")
        batch = torch.stack([u.prepare(b) for u, b in zip(self.updates, batches)], 0)
        total, metrics = self._losses(self.params, self.buffers, batch)
        total.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return metrics.detach()

    # ---- the runs' own state ----------------------------------------------------------------------------
    def _run_params(self, i: int) -> dict[str, torch.nn.Parameter]:
        return dict(self.updates[i].rgm_loss.named_parameters())

    def _load_runs_optimizer_state(self) -> None:
        """Stack the runs' Adam moments (a resumed run has them) and take their schedule position."""
        first = self.updates[0]
        self.scheduler.load_state_dict(first.scheduler.state_dict())
        for group, run_group in zip(self.optimizer.param_groups, first.optimizer.param_groups):
            group["lr"] = run_group["lr"]
        for name, stacked in self.params.items():
            states = [u.optimizer.state.get(self._run_params(i)[name]) for i, u in enumerate(self.updates)]
            if all(s is None or not s for s in states):
                continue
            if any(s is None or not s for s in states):
                raise GroupError("Some runs of the group have optimiser state and others none: resume them all "
                                 "from checkpoints at the same step, or start them all afresh.")
            self.optimizer.state[stacked] = {
                "step": states[0]["step"].clone(),
                "exp_avg": torch.stack([s["exp_avg"] for s in states]).clone(),
                "exp_avg_sq": torch.stack([s["exp_avg_sq"] for s in states]).clone(),
            }

    @torch.no_grad()
    def sync_to_runs(self) -> None:
        """Write each run's slice back into its own networks, optimiser and schedule: afterwards each run's
        :meth:`~torchrl_rgm.train.RGMUpdate.state_dict` and networks are those of a run trained alone."""
        group_lr = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        for i, update in enumerate(self.updates):
            run_params = self._run_params(i)
            for name, stacked in self.params.items():
                param = run_params[name]
                param.copy_(stacked[i])
                state = self.optimizer.state.get(stacked)
                if state:
                    update.optimizer.state[param] = {"step": state["step"].clone(),
                                                     "exp_avg": state["exp_avg"][i].clone(),
                                                     "exp_avg_sq": state["exp_avg_sq"][i].clone()}
            update.scheduler.load_state_dict(self.scheduler.state_dict())
            for g in update.optimizer.param_groups:
                g["lr"] = group_lr[g["name"]]

    @staticmethod
    def split_metrics(metrics: TensorDictBase) -> list[TensorDict]:
        """The ``[N]`` metrics of a step as one TensorDict per run."""
        return [metrics[i] for i in range(metrics.shape[0])]
