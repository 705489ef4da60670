"""Pluggy hook specifications: one registration hook per plugin kind, each docstring the manual
of its kind.

A package provides plugins by naming a module in the entry-point group ``testbed.plugins``;
that module defines `@hookimpl` functions, named after these hooks, that each return a list of
`Plugin` objects made with the `@plugin` decorator. Every plugin has a pydantic parameter
model (a subclass of `Params`), which validates its part of a scenario file, and a build
function receiving the validated parameters and returning an instance of its kind's base
class (checked: anything else stops the command with one `error:` line naming the plugin).
docs/plugins.md has a complete example of each kind.
"""

from __future__ import annotations

import pluggy

from testbed.plugin_api.activation import Activation
from testbed.plugin_api.base import Plugin
from testbed.plugin_api.curriculum import Curriculum
from testbed.plugin_api.norm import Norm
from testbed.plugin_api.panel import Panel
from testbed.plugin_api.probe import Probe
from testbed.plugin_api.update_rule import UpdateRule

PROJECT = "testbed"
ENTRY_POINT_GROUP = "testbed.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class TestbedSpecs:
    """The registration hooks, called once per process when the registry first loads."""

    @hookspec
    def testbed_norms(self) -> list[Plugin]:
        """Norms, chosen in a scenario by `model.norm` (both sites), `model.embedding_norm` and
        `model.mlp_norm` (one site each).

        ``build(params) -> Norm``, called for each site when a run starts (and whenever
        `testbed render` rebuilds the model), with the validated parameters (an instance of
        the plugin's `Params` model).

        `Norm.__call__(x)`: x is a float tensor (..., d); every leading axis (the seed axis
        first) is a batch axis, and the norm acts on the last axis of each row alone, returning
        the same shape. The embedding site receives the table of all token and position sums
        E[v] + P[t], (S, n_tokens, L, d); the MLP site the attention output xi, (S, N, d).

        `Norm.vjp(x, y, grad)`, optional: with y = norm(x) and grad = d(loss)/dy, return
        d(loss)/dx, all (..., d). Without it, autograd differentiates `__call__` inside the
        hand-written training step; with it, no autograd runs. A hand-written vjp must agree
        with autograd (docs/plugins.md shows how to test that).
        """
        ...

    @hookspec
    def testbed_activations(self) -> list[Plugin]:
        """MLP activations, chosen by `model.activation`.

        ``build(params) -> Activation``, called when a run starts (and whenever `testbed
        render` rebuilds the model).

        `Activation.__call__(x)`: elementwise, on the MLP's pre-activations (S, N, hidden),
        same shape out. `Activation.vjp(x, y, grad)`, optional, as for norms: d(loss)/dx from
        grad = d(loss)/dy, elementwise; without it autograd differentiates `__call__`.
        """
        ...

    @hookspec
    def testbed_optimizers(self) -> list[Plugin]:
        """Optimizers, chosen by `optimizer`.

        ``build(params) -> UpdateRule``, called when a run starts; the plugin's parameter
        model must subclass `OptimizerParams`, whose fields (`lr`, `lr_multipliers`,
        `clip_grad_norm`, `warmup_steps`) the engine applies around the rule.

        `UpdateRule.update(flat, grad, lr, step)` after every training step, for all seeds at
        once: update `flat` (S, P) in place. `grad` (S, P) is the gradient of each seed's mean
        batch loss, already clipped to `clip_grad_norm` per seed if set (do not modify it:
        probes read it next). `lr` (1, P) holds each coordinate's learning rate, with
        `lr_multipliers` and the linear warmup applied (the same tensor may come again: do
        not modify it). `step` counts from 1. Allocate state (moments, buffers; leading seed
        axis) on the first call. Use only correctly rounded elementwise operations (+, -, *,
        /, sqrt), no fused multiply-add (`addcmul`, `addcdiv`, `lerp`, `alpha=`/`value=`
        arguments) and nothing that mixes seeds: vectorised kernels round fused operations
        differently at different positions of a tensor, and a seed's trajectory must be
        bit-identical alone or among others (tests/test_replicas.py).

        `UpdateRule.state_dict()` / `load_state_dict(state)`, optional: the rule's state in a
        checkpoint, taken after an epoch, and set back into a freshly built rule when a stopped
        run continues, after which `update` must do exactly what it would have done had the
        run never stopped. The state is tensors, numbers, strings, lists and dicts (read back
        with `torch.load(weights_only=True)`). The defaults save every attribute holding such
        data and set it back; they refuse, with a TypeError naming it, any other value (a
        numpy array, an object of your own), which calls for overriding both.
        """
        ...

    @hookspec
    def testbed_curricula(self) -> list[Plugin]:
        """Curricula, chosen by `curriculum`: the vocabulary size p of each epoch.

        ``build(params, task) -> Curriculum``: besides its parameters, build receives the
        scenario's validated `task` section (`seq_len`, `sparsity`, `p`, `n_train`, `n_test`,
        `test_split`). It is built when the scenario is validated, again to train and to
        render, so build must be cheap and deterministic.

        `Curriculum.p_at(epoch) -> int`: p used to train epoch `epoch` (from 1); epoch 1's p
        is also that of the epoch-0 evaluation and of the `ideal` initialisation. Whenever p
        changes, the trainer samples a new training and test set (from each seed's own data
        stream); metrics.csv records p in its `p` column. `Curriculum.vocab_sizes() ->
        list[int]`: every p used, so the model gets max(vocab_sizes) token embeddings (or the
        scenario's `model.n_tokens`, validated to be at least that).
        """
        ...

    @hookspec
    def testbed_probes(self) -> list[Plugin]:
        """Probes, listed under `probes:` in a scenario; that list replaces the default
        (`[metrics, step_loss, spikes]`), so keep those in it to keep their files. Probes are
        called in the order of the list.

        ``build(params) -> Probe``, called when a run starts. Every hook is optional:

        - `start(info: RunInfo)`: before training, after initialisation. `info` has `seeds`,
          `epochs`, `steps_per_epoch`, `total_steps`, `space` (the layout of the flat (S, P)
          parameter tensor), `scenario` (validated), `params` (the live (S, P) parameters),
          `step_losses` ((total_steps, S), filled as training goes) and `epoch_of_steps()`.
          The default keeps it as `self.info`.
        - `eval_epochs(epochs) -> set[int]`: next, the epochs (0 = before training) at which
          the probe wants an `Evaluation` (per-seed train/test loss and accuracy).
        - `after_step(step, epoch, loss, grad)`: after each optimizer step (`step` from 1);
          `loss` (S,) the batch loss before the update, `grad` (S, P) as applied. Only called
          for probes that override it.
        - `after_epoch(epoch, flat, evaluation)`: after each epoch, and also at epoch 0 before
          training; `flat` (S, P) the live parameters (clone what you keep); `evaluation`
          present at the epochs of `eval_epochs` (and whenever any probe asked, and at the
          last epoch), else None.
        - `finish(out) -> dict[str, list]`: after training, with the run directory `out`
          (still a staging folder, renamed into place when the run completes): write your
          files there and return per-seed columns, {name: [one value per seed in info.seeds
          order]}, which join `per_seed` in summary.json. Not called when training without a
          run directory.
        - `state_dict() -> dict` / `load_state_dict(state)`: what the probe has gathered, for
          the checkpoint taken after an epoch's `after_epoch`, and that back when a stopped run
          continues: then `start`, `eval_epochs` and `load_state_dict` are called instead of
          `after_epoch(0, ...)` and the hooks of the epochs already trained, and the probe's
          files must come out as if the run had never stopped. State is tensors, numbers,
          strings, `Evaluation`s, lists and dicts. The defaults save every attribute holding
          such data but `info`, point an attribute that is the live parameter tensor
          (`info.params`) at the new one, leave callables and parameter models as built, and
          refuse any other value with a TypeError naming it.
        """
        ...

    @hookspec
    def testbed_panels(self) -> list[Plugin]:
        """Panels of `testbed render`, chosen by `--panels`.

        ``build(params) -> Panel``, with the parameter model's defaults (`--panels` takes
        names only), for each figure (and in each worker process of a video).

        `Panel.setup(ax, q, extent)` once per figure: call `self.prepare(ax, extent)` (title,
        labels, the square view of a geometric panel), draw what stays, and register the
        artists that change with `self.keep(...)`. `Panel.update(q, i)` for every frame i:
        change the kept artists' data only. `Panel.points(q)`, optional, (F, n, 2): what a
        geometric panel must keep in view over all frames; `extent` is fitted to it.

        `q` (`Quantities`) holds F frames of one seed: `q.seed`, `q.epochs` (F,),
        `q.params` (name -> (F, *shape) parameters), `q.trace` (the forward pass of the probe
        sentences: `xi`, `mlp_in`, `pre`, `hidden`, `zeta`, `logits`, `probs` (F, N, ...),
        `attn` (F, N, L)), `q.sentences` (their tokens, labels, colours), `q.tables`
        (`x`, `z`, `vz`: (F, n_tokens, L, d) for every token and position), and `q.run` (the
        run: `arch`, `seeds`, `p`, `k`, `scenario`, `seed_metrics(seed)`, `step_losses()`).
        """
        ...


# Plugin kind -> hook name; the order is the order of `testbed plugins`.
KINDS: dict[str, str] = {
    "norm": "testbed_norms",
    "activation": "testbed_activations",
    "optimizer": "testbed_optimizers",
    "curriculum": "testbed_curricula",
    "probe": "testbed_probes",
    "panel": "testbed_panels",
}

# Plugin kind -> the class every object its plugins build must be an instance of.
BASES: dict[str, type] = {
    "norm": Norm,
    "activation": Activation,
    "optimizer": UpdateRule,
    "curriculum": Curriculum,
    "probe": Probe,
    "panel": Panel,
}
