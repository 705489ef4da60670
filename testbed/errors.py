"""The errors a user is shown as one line: bad input (exit status 2) and work that failed
(exit status 1), the latter naming what failed where and what was kept."""

from __future__ import annotations

from pathlib import Path


class StoreWarning(UserWarning):
    """Something of the run store was set aside (a corrupt file, a damaged entry); the command
    line prints it as one `warning:` line."""


class UserError(Exception):
    """Bad input from the user (a file, a field, a flag). The message names what is wrong."""


def describe(exc: BaseException) -> str:
    """`ValueError: boom`: an exception's type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class RunFailure(Exception):
    """Work that failed after its input was accepted (exit status 1).

    `what` failed (a plugin; empty when testbed's own work failed) in `phase` (a plugin's
    method, "the training step", "writing summary.json"), at `epoch` and `step` when training
    was under way (or at the epoch of the frame being drawn), with `error` (the exception's
    type and first line; the exception itself is the `__cause__`). Whoever keeps something
    adds a sentence to `notes` and sets `kept` (the folder kept for inspection or to continue:
    `testbed.rundir.writer.staged` removes a staging folder that is not) and `log` (the file
    holding the traceback)."""

    def __init__(self, what: str, phase: str, error: str, *, epoch: float | None = None, step: int | None = None):
        super().__init__(what, phase, error, epoch, step)
        self.what, self.phase, self.error = what, phase, error
        self.epoch, self.step = epoch, step
        self.notes: list[str] = []
        self.kept: Path | None = None
        self.log: Path | None = None

    def __reduce__(self):  # picklable (a video worker's failure reaches the parent), notes and all
        return type(self), self._init_args(), self.__dict__

    def _init_args(self) -> tuple:
        return (self.what, self.phase, self.error)

    def where(self) -> str:
        if self.epoch is None:
            return ""
        step = f" (step {self.step})" if self.step is not None else ""
        return f" at epoch {self.epoch:.10g}{step}"  # a frame drawn between epochs shows a fractional one

    def headline(self) -> str:
        failed = f"{self.what} failed in {self.phase}" if self.what else f"{self.phase} failed"
        return f"{failed}{self.where()}: {self.error}"

    def __str__(self) -> str:
        return "; ".join([self.headline(), *self.notes])

    def record(self) -> dict:
        """What summary.json's `failures` list says of it."""
        return {"phase": self.phase, "epoch": self.epoch, "step": self.step, "error": self.error}


class PluginError(RunFailure):
    """A plugin raised while it worked: its `kind`, `name` and `source` (the distribution that
    provides it, e.g. 'acme-probes 0.1') name it, `phase` is the method that raised (build,
    start, eval_epochs, after_epoch, after_step, update, p_at, finish, setup, ...) or the part
    of training a norm or activation raised in."""

    def __init__(self, kind: str, name: str, source: str, phase: str, error: str, **at):
        super().__init__(f"{kind} '{name}' ({source})", phase, error, **at)
        self.kind, self.name, self.source = kind, name, source

    def _init_args(self) -> tuple:
        return (self.kind, self.name, self.source, self.phase, self.error)

    def record(self) -> dict:
        return {"kind": self.kind, "name": self.name, "source": self.source, **super().record()}


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during work that kept what it had finished: `notes` say what and where, `kept` is
    the folder kept (see `RunFailure`)."""

    def __init__(self, notes: list[str], kept: Path | None):
        super().__init__("; ".join(notes))
        self.notes, self.kept = notes, kept
