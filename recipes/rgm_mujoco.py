"""RGM on MuJoCo locomotion with an imperfect reward: data, networks, discriminator, the training loop, report.

    python recipes/rgm_mujoco.py                                  # hopper, medium-replay, negated reward
    python recipes/rgm_mujoco.py env=walker2d reward=partial seed=3 logger=wandb
    python recipes/rgm_mujoco.py algo=iql                         # any registered algorithm, same loop
    python recipes/rgm_mujoco.py resume=outputs/<run>             # continue a run exactly
    python recipes/rgm_mujoco.py "seeds=[0,1,2,3]" "run_dir='outputs/hopper-s{seed}'"  # 4 runs, one vectorised step

The configuration is in recipes/config/ (every field says what it does and the paper's value).
recipes/rgm_robomimic.py and recipes/rgm_datasharing.py run this same loop on their own data sources.
"""
from __future__ import annotations

import contextlib
import errno
import json
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from torchrl_rgm import run  # noqa: E402
from torchrl_rgm.algorithms import get_algorithm  # noqa: E402
from torchrl_rgm.atomic import DiskFullError  # noqa: E402
from torchrl_rgm.config import ConfigError  # noqa: E402
from torchrl_rgm.data import DatasetNotFoundError  # noqa: E402
from torchrl_rgm.data.pipeline import DatasetError  # noqa: E402
from torchrl_rgm.data.robomimic import RobomimicFileError  # noqa: E402
from torchrl_rgm.data.sharing import SharingError  # noqa: E402
from torchrl_rgm.diagnostics import demonstration_action_error  # noqa: E402
from torchrl_rgm.envs import make_policy_fn  # noqa: E402
from torchrl_rgm.report import evaluation_record, format_summary, report  # noqa: E402
from torchrl_rgm.sources import make_source  # noqa: E402
from torchrl_rgm.sampling import UnionReplayBuffer, averaged_extraction  # noqa: E402
from torchrl_rgm.train import save_checkpoint  # noqa: E402
from torchrl_rgm.vectorized import GroupError, VectorizedRGMUpdate, check_groupable  # noqa: E402


class Run:
    """One run of the recipe: steps 1-4 at construction, :meth:`after_update` after each update, :meth:`finish`."""

    def __init__(self, cfg: DictConfig, save_config: bool = True):
        # 1. Check everything that can be checked before any work, then claim (or reopen) the run directory
        #    (save_config=False: a group saves each run's configuration once the runs are known to fit together).
        cfg, self.run_dir, resuming, self.device = run.start_run(cfg, save=save_config)
        self.cfg, device = cfg, self.device
        self.source, self.algorithm = make_source(cfg), get_algorithm(cfg.algo.name)

        # 2. Data: D (union, with is_expert), D^E, mu0, statistics; local datasets are built if missing.
        try:
            self.data = data = self.source.load()
            print(self.source.describe(data))
            run.check_data(cfg, data)
        except Exception:
            if not resuming:  # stopped before any work: leave no empty run directory behind
                run.discard_unstarted(self.run_dir)
            raise

        # 3. Networks, losses and the update step of the algorithm (RGM: V, actor, Δr, discriminator).
        self.learner = learner = self.algorithm.build(cfg, data, device)
        self.checkpoint = self.run_dir / run.CHECKPOINT_NAME
        state = run.restore_progress(self.checkpoint, learner, cfg.budget.updates) if resuming else None
        self.summary = None  # set when the run is over
        if state is not None and state["step"] >= cfg.budget.updates and (self.run_dir / "summary.json").exists():
            print(f"{self.run_dir} finished its {cfg.budget.updates} updates; its summary stands (pass "
                  "budget.updates=<more> with resume= to train it longer).")
            self.summary = json.loads((self.run_dir / "summary.json").read_text())
            return

        # 4. The discriminator (expert vs union) is pre-trained once, frozen, and its log d^E/d^D stored per
        #    transition of the union the update samples from.
        t_pretrain = time.time()
        if state is None:
            self.algorithm.pretrain(cfg, learner, data, torch.Generator().manual_seed(cfg.seed), device)
        self.union = self.algorithm.prepare_union(cfg, learner, data.union.to_tensordict(), device,
                                                 expert=data.expert)
        self.pretrain_s = time.time() - t_pretrain  # the discriminator's pre-training + the union's log-ratio
        self.training_rows = self.algorithm.training_set(cfg, data, self.union, learner=learner)
        self.initial_observation = self.algorithm.initial_observation(cfg, data)  # s0 ~ mu0 (algo.initial_states)
        self.buffer = UnionReplayBuffer(self.training_rows, self.initial_observation,
                                        cfg.algo.batch_size, seed=cfg.seed, device=device)
        # RGM's actor learns on rows drawn in proportion to w (refreshed every `refresh` updates; uniform until the
        # first refresh); a resumed run's distribution comes back with the sampler's state
        self.refresh, self.refresh_s = self.algorithm.extraction_refresh(cfg), 0.0
        if self.refresh and state is None:
            self.buffer.set_extraction_weights(torch.ones(self.training_rows.shape[0]))
        self.logger = run.make_logger(cfg, self.run_dir, resumed_at=state["step"] if state is not None else None)
        self.policy = make_policy_fn(learner.actor, data.normalize_observation, device)
        self.learner_policy = make_policy_fn(learner.actor, lambda obs: obs, device)  # on the data's own inputs
        self.step, self.history = 0, []
        if state is not None:
            self.buffer.load_sampling_state(state["sampler"])
            self.step, self.history = state["step"], state["history"]
            torch.set_rng_state(state["torch_rng"])
        self.saved_step = self.step if state is not None else None  # the update checkpoint.pt holds
        self.start, self.start_step, self.eval_time = time.time(), self.step, 0.0

    @property
    def done(self) -> bool:
        return self.summary is not None or self.step >= self.cfg.budget.updates

    def evaluates(self, step: int) -> bool:
        return step % self.cfg.eval.every == 0 or step == self.cfg.budget.updates

    def checkpoints(self, step: int) -> bool:
        return step % self.cfg.checkpoint_every == 0 or step == self.cfg.budget.updates

    def refreshes(self, step: int) -> bool:
        return bool(self.refresh) and step % self.refresh == 0 and step < self.cfg.budget.updates

    def due(self, step: int) -> bool:
        """Whether update ``step`` ends with an evaluation, a checkpoint or a refresh of the extraction weights (a
        group syncs its runs first)."""
        return self.evaluates(step) or self.checkpoints(step) or self.refreshes(step)

    def refresh_extraction(self) -> None:
        """The extraction weights of every training row from the current networks; the actor's rows are drawn
        from them until the next refresh."""
        t = time.time()
        with torch.no_grad():
            weights = self.algorithm.extraction_weights(self.cfg, self.learner, self.training_rows,
                                                        self.initial_observation, self.device)
        if self.cfg.algo.get("extraction_average", False):
            weights = averaged_extraction(weights, self.buffer.extraction_distribution(), self.step // self.refresh)
        self.buffer.set_extraction_weights(weights)
        self.refresh_s += time.time() - t

    def after_update(self, metrics) -> None:
        """Count the update; evaluate, log and checkpoint (atomically) when due."""
        cfg, self.step = self.cfg, self.step + 1
        if self.refreshes(self.step):  # before a checkpoint of the same update, which keeps the new weights
            self.refresh_extraction()
        if self.evaluates(self.step):
            t_eval = time.time()
            returns = self.source.evaluate(self.policy, self.data)
            record = evaluation_record(self.step, returns, self.data, self.learner.update.metrics_to_floats(metrics))
            # the checkpoint a user without a simulator would keep: the policy closest to the demonstration
            record["demonstration_action_error"] = demonstration_action_error(
                self.learner_policy, self.data.expert, self.cfg.algo.get("gamma", 0.99))
            if self.source.success_rate:
                record["success_rate"] = float((returns > 0).mean())
            self.history.append(record)
            if selected_evaluation(self.history)["selected_step"] == self.step:
                self.save_selected()
            run.log_metrics(self.logger, record, self.step)
            self.eval_time += time.time() - t_eval
        if self.checkpoints(self.step):
            self.save()

    @contextlib.contextmanager
    def _resumable_on_full_disk(self):
        """A full disk while writing stops the run with how to continue it."""
        try:
            yield
        except DiskFullError as err:
            raise DiskFullError(err.errno, f"{err.strerror} The run stopped at update {self.step}; once there is "
                                f"space, continue it from its last checkpoint with resume={self.run_dir}") from err

    def save_selected(self) -> None:
        """The actor of this evaluation as ``selected_policy.pt`` (atomic, ``weights_only``-loadable): the one
        closest to the demonstration so far."""
        with self._resumable_on_full_disk():
            save_checkpoint({"actor": self.learner.actor.state_dict(), "step": self.step},
                            self.run_dir / run.SELECTED_POLICY_NAME)

    def save(self) -> None:
        """The checkpoint of this update (atomic); a full disk stops the run with how to continue it."""
        with self._resumable_on_full_disk():
            run.save_progress(self.checkpoint, self.learner, self.buffer, self.step, self.history,
                              self.cfg.budget.updates)
        self.saved_step = self.step

    def interrupted(self) -> str:
        """Saves the update it stopped at (Ctrl-C, SIGTERM) and says so."""
        if self.saved_step != self.step:
            self.save()
        return f"interrupted at update {self.step}, saved"

    def finish(self) -> dict:
        # 6. Report: summary.json (scores, diagnostics), learning curve, reward correction, final policy.
        if self.summary is None:
            elapsed = time.time() - self.start
            self.summary = report(self.cfg, self.source, self.data, self.algorithm, self.learner, self.union,
                                  self.history, elapsed,
                                  (self.step - self.start_step) / max(elapsed - self.eval_time, 1e-9), self.run_dir,
                                  self.device, extra={"discriminator_s": self.pretrain_s, **self.learner.info,
                                         **({"extraction_refresh_s": self.refresh_s} if self.refresh else {}),
                                         **selected_evaluation(self.history)})
            print(format_summary(self.summary))
        return self.summary


def selected_evaluation(history: list[dict]) -> dict:
    """``selected_step``, ``selected_normalized_score``, ``selected_demonstration_action_error``: the evaluation
    whose policy is closest to the demonstration (the first of equals), i.e. ``selected_policy.pt``'s; ``{}`` when
    no evaluation measured it."""
    measured = [h for h in history if "demonstration_action_error" in h]
    if not measured:
        return {}
    best = min(measured, key=lambda h: h["demonstration_action_error"])
    return {"selected_step": best["step"], "selected_normalized_score": best["normalized_score"],
            "selected_demonstration_action_error": best["demonstration_action_error"]}


def train(cfg: DictConfig) -> dict:
    """Train one run (or, with ``seeds=[...]``, :func:`train_group`); returns its summary."""
    if cfg.get("seeds"):
        return train_group(cfg)
    r = Run(cfg)
    if r.summary is not None:  # a finished run, resumed with its own budget
        return r.summary
    # 5. The loop: one (compiled) update per step; evaluation, logging and an atomic checkpoint every N steps.
    bar = tqdm(total=r.cfg.budget.updates, initial=r.step, desc=r.cfg.algo.name.upper(), mininterval=2)
    with run.StopOnInterrupt() as interrupt:  # Ctrl-C: stop between two updates, say how to resume
        while not r.done and not interrupt.requested:
            evaluations = len(r.history)
            r.after_update(r.learner.update(r.buffer.sample()))
            bar.update(1)
            if len(r.history) > evaluations:
                bar.set_postfix(score=f"{r.history[-1]['normalized_score']:.1f}")
    bar.close()
    if interrupt.requested:
        sys.exit(f"{r.interrupted()}; continue from it with:\n    python {sys.argv[0]} resume={r.run_dir}")
    return r.finish()


def train_group(cfg: DictConfig) -> dict:
    """``seeds=[s0, s1, ...]``: one run per seed, trained together in this process by one vectorised update step
    (:class:`~torchrl_rgm.vectorized.VectorizedRGMUpdate`); each run is the run ``seed=s`` would train alone, in its
    own directory (``run_dir`` / ``resume`` name it with ``{seed}``), with its own data order, evaluations, logs and
    checkpoints, and resumes alone or in a group. Returns ``{"runs": {seed: summary}}``."""
    runs = [Run(c, save_config=False) for c in run.group_configs(cfg)]
    todo = trained = [r for r in runs if not r.done]
    if todo:
        try:  # before any update and before any saved configuration changes: e.g. runs first configured with
            # different budgets (Δr's rate is rescaled to it); a refused resume leaves each run as it was
            check_groupable([r.learner.update for r in todo], same_step=False)
        except GroupError as err:
            raise GroupError(f"seeds {[r.cfg.seed for r in todo]} (runs 0..{len(todo) - 1}) cannot train as one "
                             f"group: {err} Resume each alone with resume=<its directory>.") from None
    for r in runs:
        run.save_config(r.cfg, r.run_dir)
    if not todo:
        return {"runs": {r.cfg.seed: r.finish() for r in runs}}
    first = todo[0].cfg
    if todo[0].learner.update.autocast_dtype is not None:
        print("precision bfloat16: each run of the group is a valid run of its seed, but bf16 rounds the batched "
              "products otherwise than one run's (~1e-2 within 100 updates, not the 1e-3 float32 keeps): for the "
              "numbers seed=<s> gives alone, train with precision=float32 (docs/design.md)", file=sys.stderr)
    # compile: auto compiles a group on CUDA only: on CPU, Inductor's code for the vmap-ed products ran 1.4-2x
    # slower than eager (benchmarks/update_throughput.py --vectorized; docs/results.md "Measured")
    compile = first.compile is True or (first.compile == "auto" and todo[0].device.type == "cuda")
    with run.StopOnInterrupt() as interrupt:
        while todo and not interrupt.requested:
            # runs resumed at different updates (one was continued alone): the ones furthest behind train as a group
            # until they reach the next, which then joins them; one group from there on
            step = min(r.step for r in todo)
            behind = [r for r in todo if r.step == step]
            until = min([r.step for r in todo if r.step > step], default=first.budget.updates)
            group = VectorizedRGMUpdate([r.learner.update for r in behind], compile=compile,
                                        compile_mode=first.compile_mode)
            for r in behind:  # a grouped run's updates/s is the group's steps/s (every run's evaluations excluded)
                if r.step == r.start_step:  # its clock starts with its first update in this process
                    r.start = time.time()
            bar = tqdm(total=first.budget.updates, initial=step, desc=f"{len(behind)} runs", mininterval=2)
            while behind[0].step < until and not interrupt.requested:
                metrics = group([r.buffer.sample() for r in behind])
                if behind[0].due(behind[0].step + 1) or behind[0].step + 1 == until:
                    group.sync_to_runs()  # the runs' own networks, optimisers, schedules: for eval/checkpoint/regroup
                for i, r in enumerate(behind):
                    r.after_update(metrics[i])
                bar.update(1)
            bar.close()
            if interrupt.requested:
                group.sync_to_runs()  # each run saves the update it stopped at
            todo = [r for r in todo if not r.done]
    evaluations = sum(r.eval_time for r in trained)
    for r in trained:
        r.eval_time = evaluations
    if interrupt.requested:
        sys.exit("\n".join(f"{r.run_dir}: {r.interrupted()}" for r in todo) + "\ncontinue them all with the same "
                 "command and resume=<the run_dir pattern, with {seed}> (or each alone with resume=<its directory>).")
    return {"runs": {r.cfg.seed: r.finish() for r in runs}}


def train_or_exit(cfg: DictConfig) -> dict:
    """:func:`train`, with a bad configuration or dataset reported as one line (and exit status 1), not a traceback."""
    try:
        return train(cfg)
    except (ConfigError, DatasetError, DatasetNotFoundError, SharingError, RobomimicFileError, GroupError) as err:
        sys.exit(f"error: {err}")
    except OSError as err:  # a full disk (checkpoints, logs, plots): one line, not a writer's traceback
        if isinstance(err, DiskFullError) or err.errno == errno.ENOSPC:
            sys.exit(f"error: {err.strerror if isinstance(err, DiskFullError) else err}")
        raise


@hydra.main(config_path="config", config_name="rgm_mujoco", version_base=None)
def main(cfg: DictConfig) -> dict:
    return train_or_exit(cfg)


if __name__ == "__main__":
    try:
        run.check_group_overrides(sys.argv[1:], Path(__file__).parent / "config", "rgm_mujoco")
    except ConfigError as err:
        sys.exit(f"error: {err}")
    main()
