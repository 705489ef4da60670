"""The training engine: S seeds of one scenario as one vectorized program.

No Python loop over seeds runs inside the training step: data, parameters, optimizer state and
losses all carry the leading seed axis. Loops over seeds happen only at set-up (sampling each
seed's data and initialisation from its own streams) and once per epoch to draw each seed's
batch order from its own generator.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch

from testbed.analysis.spike_detector import first_nonfinite
from testbed.config.schema import Scenario
from testbed.engine import blame, checkpoint, step_graphs
from testbed.engine.batch_order import BatchOrders
from testbed.engine.device import available, resolve
from testbed.engine.gradients import compiled_loss_and_grad, loss_and_grad
from testbed.engine.model import Architecture, ParamSpace, standard_normal
from testbed.engine.optimizer import Optimizer
from testbed.engine.seeding import generator
from testbed.engine.stage import DEVICE_EVAL_ELEMENTS, Stage, batches, compact, evaluate
from testbed.engine.task import make_dataset
from testbed.engine.threads import available_cores
from testbed.errors import RunFailure, UserError, describe
from testbed.plugin_api.base import Plugin
from testbed.plugin_api.curriculum import RESETS, Curriculum
from testbed.plugin_api.probe import METRIC_FIELDS, Evaluation, Probe, RunInfo
from testbed.plugin_api.registry import Registry, default_registry
from testbed.plugin_api.update_rule import OptimizerParams, UpdateRule


@dataclass
class Components:
    """A scenario's plugins, resolved and built."""

    arch: Architecture
    space: ParamSpace
    optimizer: Optimizer
    curriculum: Curriculum
    probes: list[Probe]
    made: list[tuple[object, Plugin]] = field(default_factory=list)  # every plugin object and its plugin, to name a failing one
    new_rule: Callable[[], UpdateRule] | None = None  # builds the optimizer's rule afresh (a curriculum's reset)


def build(scenario: Scenario, registry: Registry | None = None) -> Components:
    """Build every plugin the scenario names (each checked to be of its kind's base class)."""
    registry = registry or default_registry()
    m = scenario.model
    made: list[tuple[object, Plugin]] = []

    def make(kind: str, ref, *args):
        plugin = registry.get(kind, ref.name)
        try:
            obj = plugin.build(ref, *args)
        except UserError:
            raise
        except Exception as exc:
            raise blame.build_failure(plugin, exc) from exc
        made.append((obj, plugin))
        return obj

    curriculum = make("curriculum", scenario.curriculum, scenario.task)
    arch = Architecture(
        d=m.d,
        hidden=m.hidden,
        n_tokens=m.n_tokens or max(curriculum.vocab_sizes()),  # enough for every p the run uses
        seq_len=scenario.task.seq_len,
        embedding_norm=make("norm", m.embedding_norm or m.norm),
        mlp_norm=make("norm", m.mlp_norm or m.norm),
        activation=make("activation", m.activation),
        mlp_bias=m.mlp_bias,
    )
    space = ParamSpace(arch.shapes())
    options = cast(OptimizerParams, scenario.optimizer)  # every optimizer plugin's options subclass OptimizerParams
    optimizer = Optimizer(make("optimizer", scenario.optimizer), options, space)
    probes = [make("probe", ref) for ref in scenario.probes]
    return Components(arch, space, optimizer, curriculum, probes, made, new_rule=lambda: make("optimizer", scenario.optimizer))


@dataclass
class RunResult:
    seeds: list[int]
    final: Evaluation
    columns: dict[str, list] = field(default_factory=dict)  # per-seed summary columns from probes
    seconds: float = 0.0
    steps: int = 0
    diverged_step: list[int] = field(default_factory=list)  # per seed: first step (from 0) with a non-finite loss, -1 if none
    steps_per_epoch: int = 1
    failures: list[RunFailure] = field(default_factory=list)  # probes whose finish raised: their outputs are missing

    def diverged_epoch(self) -> list[int]:
        """Per seed: the epoch (from 1) of its first non-finite step loss, -1 if none."""
        return [s // self.steps_per_epoch + 1 if s >= 0 else -1 for s in self.diverged_step]


ProgressFn = Callable[[int, Evaluation | None], None]


def train(
    scenario: Scenario,
    out_dir: Path | None = None,
    registry: Registry | None = None,
    progress: ProgressFn | None = None,
    checkpoints: checkpoint.Checkpointing | None = None,
) -> RunResult:
    """Train every seed of `scenario`; probes write their outputs into `out_dir` if given.
    With `checkpoints`, write the training state after the epochs its policy names (and after
    the last), and first continue from its file if it says so.

    A plugin that raises comes out as a `PluginError` naming it, the phase, the epoch and the
    step (see `testbed.engine.blame`); a probe whose `finish` raises only loses its outputs,
    listed in the result's `failures`."""
    started = time.perf_counter()
    c = build(scenario, registry)
    at = blame.Position()
    try:
        return _train(scenario, c, out_dir, progress, checkpoints, at, started)
    except (UserError, RunFailure):
        raise
    except Exception as exc:
        raise blame.failure(exc, c.made, at) from exc


def _reset(c: Components, flat: torch.Tensor, seeds: list[int], epoch: int) -> None:
    """What the curriculum starts afresh at this epoch (`Curriculum.resets_at`)."""
    resets = c.curriculum.resets_at(epoch)
    if not resets:
        return
    unknown = set(resets) - RESETS
    if unknown:
        raise ValueError(f"resets_at({epoch}) returned {sorted(unknown)}; known: {sorted(RESETS)}")
    if "optimizer" in resets:
        assert c.new_rule is not None  # `build` always sets it
        c.optimizer.reset(c.new_rule())
    old_p, new_p = c.curriculum.p_at(epoch - 1), c.curriculum.p_at(epoch)
    if "new_tokens" in resets and new_p > old_p:
        emb = c.space.views(flat)["tok_emb"]  # (S, n_tokens, d)
        for i, seed in enumerate(seeds):
            fresh = standard_normal((new_p - old_p, emb.shape[-1]), generator(seed, "init", "tok_emb", "epoch", epoch))
            emb[i, old_p:new_p] = fresh


def _initial_weights(init, c: Components, task, seeds: list[int]) -> torch.Tensor:
    """(S, P): PyTorch's default initialisation, the ideal circuit, or a warm start from a
    source run's snapshot (the token rows it does not provide keep this model's own draws)."""
    if init == "ideal":
        from testbed.engine.ideal_circuit import flat_weights

        return flat_weights(c.arch, c.space, task.sparsity, c.curriculum.p_at(1), len(seeds))
    flat = c.space.init(seeds)
    if init == "default":
        return flat
    from testbed.rundir.warm_start import Source, start_from

    views = c.space.views(flat)
    fresh = {name: v.numpy() for name, v in views.items()}
    for name, values in start_from(Source.read(init.run), init.epoch, init.keep_tokens, fresh, seeds).items():
        views[name].copy_(torch.from_numpy(values))
    return flat


def _train(
    scenario: Scenario,
    c: Components,
    out_dir: Path | None,
    progress: ProgressFn | None,
    checkpoints: checkpoint.Checkpointing | None,
    at: blame.Position,
    started: float,
) -> RunResult:
    arch, space, task = c.arch, c.space, scenario.task
    seeds = list(scenario.seeds)
    epochs = scenario.training.epochs
    B = scenario.training.batch_for(task.n_train)
    n = task.n_train
    steps_per_epoch = -(-n // B)
    device = _device(scenario)
    remote = device.type != HOST  # the training state is not in the memory probes read
    step_fn = compiled_loss_and_grad() if scenario.training.compile else loss_and_grad
    if not scenario.training.compile and step_graphs.wanted(device):
        step_fn = step_graphs.StepGraphs(loss_and_grad)  # the same kernels, launched by one replay

    flat = _initial_weights(scenario.model.init, c, task, seeds)
    absent = [space.slices[name] for name in arch.absent()]
    for sl in absent:
        flat[:, sl] = 0.0
    host = flat  # what probes see: the parameters themselves, or their copy on the CPU
    if remote:
        flat = flat.to(device, copy=True)
        c.optimizer.to(device)
    views = space.views(flat)

    info = RunInfo(seeds, epochs, steps_per_epoch, space, scenario, params=host, live=flat)
    for probe in c.probes:
        probe.start(info)
    step_probes = [p for p in c.probes if p.observes_steps()]
    on_device = [p for p in step_probes if p.steps_on_device] if remote else step_probes  # given the step's tensors where they are
    on_host = [p for p in step_probes if p not in on_device]  # given CPU copies, every step
    eval_epochs = {epochs}.union(*(p.eval_epochs(epochs) for p in c.probes))

    # Off the CPU, the next epoch's orders are drawn while the device trains (`batch_order`).
    orders = BatchOrders(seeds, n, ahead=remote, workers=available_cores() if remote else 1)
    fused = _fused_engine(scenario, c)  # None: the reference engine
    cache_sized = device.type == "cpu"  # pieces of work that fit a CPU's cache; a GPU takes each whole
    step_block = STEP_BLOCK if cache_sized else None

    def stage_for(p: int, current: Stage | None) -> Stage:
        """The stage in force: kept while p stays, sampled anew when the curriculum changes p."""
        if current is not None and current.p == p:
            return current
        ds = make_dataset(seeds, p, task.seq_len, task.sparsity, task.n_train, task.n_test, task.test_split)
        return Stage.prepare(ds, arch, c.curriculum.restricts_logits(), None if cache_sized else DEVICE_EVAL_ELEMENTS).to(device)

    def evaluation_at(epoch: int) -> Evaluation:
        """The evaluation of the stage in force, its (S,) tensors on the CPU."""
        ev = fused.evaluate(flat, data, epoch) if fused is not None else evaluate(arch, views, data, epoch)
        return _on_cpu(ev) if remote else ev

    def to_host() -> torch.Tensor:
        if remote:
            host.copy_(flat)
        return host

    live = checkpoint.Live(flat, c.optimizer, orders, info, c.probes)
    done, step, seconds_before = 0, 0, 0.0  # epochs, steps and seconds of training before this session
    at.epoch, at.step = 0, 0
    if checkpoints is not None and checkpoints.resume:
        restored = live.restore(checkpoint.read(checkpoints.file))
        done, step, evaluation, seconds_before = restored.epoch, restored.step, restored.evaluation, restored.seconds
        data = stage_for(c.curriculum.p_at(max(done, 1)), None)  # the stage of the last epoch, derived again
    else:
        data = stage_for(c.curriculum.p_at(1), None)
        evaluation = evaluation_at(0) if 0 in eval_epochs else None
        to_host()
        for probe in c.probes:
            probe.after_epoch(0, host, evaluation)
    schedule = checkpoint.Schedule(checkpoints.policy) if checkpoints is not None else None
    if schedule is not None and schedule.policy.enabled:
        live.check()

    for epoch in range(done + 1, epochs + 1):
        at.epoch = epoch
        if epoch > 1:
            _reset(c, flat, seeds, epoch)
        data = stage_for(c.curriculum.p_at(epoch), data)
        perm = orders.take()  # (S, n)
        if remote:  # sent compact (a quarter of the bytes at n < 32768), widened there
            perm = perm.to(compact(n)).to(device).long()
        pending: list[torch.Tensor] = []  # off the CPU: the epoch's losses, copied back at its end
        if fused is not None:
            step = _fused_epoch(fused, flat, data, perm, B, step, epoch, info, step_probes, at)
        for xb, yb in batches(data, perm, B) if fused is None else ():
            at.step = step + 1
            losses, grad = _step(step_fn, arch, views, xb, yb, data.scored, step_block)
            if remote and not on_host:
                pending.append(losses)
            else:
                info.step_losses[step].copy_(losses)
            step += 1
            for sl in absent:  # before the optimizer, so that clipping and the update never see them
                grad[:, sl] = 0.0
            c.optimizer.step(flat, grad)
            for sl in absent:  # the built-in rules leave 0 at 0; a plugin rule may not (noise, a decay target)
                flat[:, sl] = 0.0
            for probe in on_device:
                probe.after_step(step, epoch, losses, grad)
            if on_host:
                host_losses, host_grad = losses.cpu(), grad.cpu()
                to_host()
                for probe in on_host:
                    probe.after_step(step, epoch, host_losses, host_grad)
        if pending:
            info.step_losses[step - len(pending) : step].copy_(torch.stack(pending))
        evaluation = evaluation_at(epoch) if epoch in eval_epochs else None
        to_host()
        for probe in c.probes:
            probe.after_epoch(epoch, host, evaluation)
        if schedule is not None and checkpoints is not None and schedule.due(epoch, epochs):
            began = schedule.clock()
            seconds = seconds_before + time.perf_counter() - started
            state = live.capture(epoch, step, evaluation, seconds, checkpoints.identity)
            try:
                checkpoint.write(checkpoints.file, state)
            except OSError as exc:  # a full disk, a file system gone read-only: the previous checkpoint stays
                failed = RunFailure("", "writing the checkpoint", describe(exc), epoch=epoch, step=step)
                raise failed from exc
            schedule.written(began)
        if progress is not None:
            progress(epoch, evaluation)

    at.epoch = at.step = None
    columns: dict[str, list] = {}
    failures: list[RunFailure] = []
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for probe in c.probes:
            try:
                with _removing_what_is_left_on_failure(Path(out_dir)):
                    columns.update(probe.finish(Path(out_dir)))
            except Exception as exc:  # the other probes' outputs and the trained run stay
                failures.append(blame.failure(exc, c.made, at))
    orders.close()
    diverged = first_nonfinite(info.step_losses.numpy()).tolist()
    seconds = seconds_before + time.perf_counter() - started
    return RunResult(seeds, cast(Evaluation, evaluation), columns, seconds, step, diverged, steps_per_epoch, failures)  # the last epoch is always evaluated


def _fused_engine(scenario: Scenario, c: Components):
    """The fused engine's driver where `training.engine` picks it (`fused.coverage.choose`)."""
    if scenario.training.engine == "reference":
        return None
    from testbed.engine.fused.coverage import choose

    if choose(scenario, c) == "reference":
        return None
    from testbed.engine.fused.driver import FusedEngine

    return FusedEngine(scenario, c)


def _fused_epoch(fused, flat, data: Stage, perm, B: int, step: int, epoch: int, info: RunInfo, step_probes: list[Probe], at) -> int:
    """One epoch on the fused engine: all its steps in one call, or, where a probe observes
    steps, one call per step with the applied gradient for it. Returns the step count."""
    n = perm.shape[1]
    count = -(-n // B)
    if not step_probes:
        at.step = step + 1
        fused.steps(flat, data, perm, B, 0, count, info.step_losses, step, None)
        return step + count
    grad = torch.empty_like(flat)
    for i in range(count):
        at.step = step + 1
        fused.steps(flat, data, perm, B, i * B, 1, info.step_losses, step, grad)
        step += 1
        losses = info.step_losses[step - 1].clone()
        for probe in step_probes:
            probe.after_step(step, epoch, losses, grad)
    return step


STEP_BLOCK = 512  # seeds per piece of a step: beyond, a step runs block by block (see `_step`)


def _step(
    fn, arch: Architecture, views: dict, xb: torch.Tensor, yb: torch.Tensor, scored: int | None, block: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Losses (S,) and gradient (S, P) of one step, computed `block` seeds at a time (None: all
    at once, as on a GPU): on a CPU a step's intermediates for thousands of seeds (40 MB each
    at 10,000) do not stay in cache, those of a block do (1.35x per step at 4096 seeds). Seeds
    are independent in every operation, so a block computes exactly what the whole would."""
    S = xb.shape[0]
    if block is None or S <= block:
        return fn(arch, views, xb, yb, scored)
    parts = [
        fn(arch, {name: v[lo : lo + block] for name, v in views.items()}, xb[lo : lo + block], yb[lo : lo + block], scored)
        for lo in range(0, S, block)
    ]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


HOST = "cpu"  # the device whose tensors probes can read in place (tests set another to run the copying path on the CPU)


def _device(scenario: Scenario) -> torch.device:
    """The device `training.device` names, checked to be usable here."""
    name = resolve(scenario.training.device)
    why = available(name)
    if why is not None:
        raise UserError(f"training.device {name}: {why}")
    return torch.device(name)


def _on_cpu(ev: Evaluation) -> Evaluation:
    return Evaluation(ev.epoch, ev.p, *(getattr(ev, name).cpu() for name in METRIC_FIELDS))


@contextmanager
def _removing_what_is_left_on_failure(folder: Path) -> Iterator[None]:
    """A probe that fails in `finish` may have begun a file: remove whatever it added to
    `folder`, so that every file of a run is complete."""
    before = set(folder.iterdir())
    try:
        yield
    except BaseException:
        for added in set(folder.iterdir()) - before:
            if added.is_dir() and not added.is_symlink():
                shutil.rmtree(added)
            else:
                added.unlink()
        raise
