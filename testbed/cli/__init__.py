"""The `testbed` command line (commands in `testbed.cli.commands`, progress and tables beside it).

Exit status: 0 done; 1 a failure during the work (a plugin that raised, a run that could not
be finished), one `error:` line naming what failed, where, and what was kept, with the
traceback in the run's error.log (and on the terminal with `--debug` or TESTBED_DEBUG=1); 2 bad
input (a missing file, a scenario field out of range, an unknown plugin, a malformed flag, an
output path that cannot be created), one `error:` line per problem on stderr and no traceback;
130 interrupted (Ctrl-C), 143 terminated (SIGTERM, handled as Ctrl-C: what was kept is said, and
the same command continues). This module imports neither torch nor the commands until `main` runs, so that
the console script can choose how OpenMP threads wait (spinning on an idle machine, sleeping
on a busy one) before torch loads it.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable, Container, MutableMapping

from testbed.errors import RunFailure, StoreWarning, UserError, describe


def busy_cores(interval: float = 0.1) -> float:
    """How many cores' worth of work other processes are doing right now (from /proc/stat over
    `interval` seconds; the 1-minute load average where /proc is absent)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except OSError:
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cores = os.cpu_count() or 1
    return cores * (1 - (idle1 - idle0) / max(total1 - total0, 1))


def openmp_wait_policy(torch_loaded: bool, user_setting: str | None, trains: bool, busy: Callable[[], float] = busy_cores) -> str | None:
    """The OMP_WAIT_POLICY to ask for, or None to leave OpenMP's default. Threads that spin while
    they wait are fastest on an idle machine (100 seeds: 0.98 s against 2.05 s passive) and
    disastrous when another process holds a core (4.4 s against 1.4 s passive; see
    benchmarks/bench_threads.py). OpenMP reads the setting once, when torch loads, so only a
    process that has not loaded torch yet can choose; a user's own setting always wins; and
    only a command that `trains` samples the load (`busy()`, 0.1 s), which would otherwise
    slow every `validate`, `plugins` or `--help` for nothing."""
    if torch_loaded or user_setting is not None or not trains:
        return None
    return "PASSIVE" if busy() >= BUSY_CORES else None


BUSY_CORES = 0.5  # other processes' load (in cores) from which waiting threads should sleep, not spin


TRAINING_COMMANDS = {"run", "compare", "power", "sweep", "spikes"}  # the commands whose speed depends on how OpenMP threads wait


def _command(argv: list[str]) -> str | None:
    """The command named on the command line (the global options before it are flags)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _choose_openmp_wait_policy(
    argv: list[str], environ: MutableMapping[str, str] = os.environ, modules: Container[str] = sys.modules,
    busy: Callable[[], float] = busy_cores,
) -> None:
    """Set OMP_WAIT_POLICY in `environ` for the command of `argv`, as `openmp_wait_policy` says."""
    policy = openmp_wait_policy("torch" in modules, environ.get("OMP_WAIT_POLICY"), _command(argv) in TRAINING_COMMANDS, busy)
    if policy is not None:
        environ["OMP_WAIT_POLICY"] = policy


def _show_store_warnings() -> None:
    """A StoreWarning (a corrupt stored file set aside) is one `warning:` line, every time
    (inside `main`'s `warnings.catch_warnings()`, which gives the filters back)."""
    import warnings

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, StoreWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("always", StoreWarning)


def terminate_as_interrupt(options: dict) -> None:
    """SIGTERM (a scheduler's stop, `kill`) raises KeyboardInterrupt, as Ctrl-C does, so that the
    work keeps what it finished and says so; `options["terminated"]` records it."""
    import signal

    def on_sigterm(signum, frame):
        options["terminated"] = True
        raise KeyboardInterrupt("SIGTERM")

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (main() called from one): leave the default
        pass


def main() -> None:
    """Entry point: the exit status and one-line errors above. What it sets for the command
    (how warnings show, SIGTERM) is given back when it returns (a caller may run it in-process)."""
    import signal
    import threading
    import warnings

    _choose_openmp_wait_policy(sys.argv[1:])
    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        with warnings.catch_warnings():
            _show_store_warnings()
            _main()
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)


def _main() -> None:
    from testbed.cli.commands import app

    code: object = 0
    options: dict = {"debug": False}  # `testbed --debug` (or TESTBED_DEBUG), and an interrupt, set by testbed.cli.commands
    terminate_as_interrupt(options)
    try:
        code = app(standalone_mode=False, obj=options)
        if "interrupted" in options:
            raise options["interrupted"]
    except UserError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        said = "terminated (SIGTERM)" if options.get("terminated") else "interrupted"
        print("; ".join([said, *getattr(exc, "notes", [])]), file=sys.stderr)
        sys.exit(143 if options.get("terminated") else 130)
    except RunFailure as failure:
        _fail(str(failure), failure.__cause__ or failure, options["debug"], logged=failure.log is not None)
    except Exception as exc:
        # Usage errors of the command-line parser (typer's click): exit_code 2 and a message.
        format_message = getattr(exc, "format_message", None)
        if getattr(exc, "exit_code", None) == 2 and callable(format_message):
            print(f"error: {format_message()}", file=sys.stderr)
            sys.exit(2)
        if type(exc).__name__ == "Abort":
            print("aborted", file=sys.stderr)
            sys.exit(130)
        _fail(describe(exc), exc, options["debug"], logged=False)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, exc: BaseException, debug: bool, logged: bool) -> None:
    """A failure during the work: its traceback with --debug, then one line; exit status 1."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    hint = "" if logged or debug else " (testbed --debug shows the traceback)"
    print(f"error: {message}{hint}", file=sys.stderr)
    sys.exit(1)
