"""The `testbed` command line (commands in `testbed.cli.commands`, progress and tables beside it).

Exit status: 0 done; 1 a failure during the work (a plugin that raised, a run that could not
be finished), one `error:` line naming what failed, where, and what was kept, with the
traceback in the run's error.log (and on the terminal with `--debug` or TESTBED_DEBUG=1); 2 bad
input (a missing file, a scenario field out of range, an unknown plugin, a malformed flag, an
output path that cannot be created), one `error:` line per problem on stderr and no traceback;
130 interrupted. This module imports neither torch nor the commands until `main` runs, so that
the console script can set up OpenMP first.
"""

from __future__ import annotations

import os
import sys
import traceback

from testbed.errors import RunFailure, UserError, describe


def _openmp_waits_passively() -> None:
    """OpenMP threads that spin while they wait fight any other busy process for a core: on a
    2-core machine with one core taken, a run took 3.4x as long as with passive waiting.
    OpenMP reads this once, when torch loads, so only a process that has not loaded torch yet
    (the console script) can ask; a user's own OMP_WAIT_POLICY wins."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    """Entry point: the exit status and one-line errors above."""
    _openmp_waits_passively()
    from testbed.cli.commands import app

    options: dict = {"debug": False}  # `testbed --debug` (or TESTBED_DEBUG), and an interrupt, set by testbed.cli.commands
    try:
        code = app(standalone_mode=False, obj=options)
        if "interrupted" in options:
            raise options["interrupted"]
    except UserError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        print("; ".join(["interrupted", *getattr(exc, "notes", [])]), file=sys.stderr)
        sys.exit(130)
    except RunFailure as failure:
        _fail(str(failure), failure.__cause__ or failure, options["debug"], logged=failure.log is not None)
    except Exception as exc:
        # Usage errors of the command-line parser (typer's click): exit_code 2 and a message.
        if getattr(exc, "exit_code", None) == 2 and hasattr(exc, "format_message"):
            print(f"error: {exc.format_message()}", file=sys.stderr)
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
