"""The `testbed` command line (commands in `testbed.cli.commands`, progress and tables beside it).

Exit status: 0 done; 2 bad input (a missing file, a scenario field out of range, an unknown
plugin, a malformed flag), one `error:` line per problem on stderr and no traceback; 130
interrupted. This module imports neither torch nor the commands until `main` runs, so that the
console script can set up OpenMP first.
"""

from __future__ import annotations

import os
import sys

from testbed.errors import UserError


def _openmp_waits_passively() -> None:
    """OpenMP threads that spin while they wait fight any other busy process for a core: on a
    2-core machine with one core taken, a run took 3.4x as long as with passive waiting.
    OpenMP reads this once, when torch loads, so only a process that has not loaded torch yet
    (the console script) can ask; a user's own OMP_WAIT_POLICY wins."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    """Entry point: one-line errors and exit status 2 for bad input."""
    _openmp_waits_passively()
    from testbed.cli.commands import app

    try:
        code = app(standalone_mode=False)
    except UserError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # an output path that cannot be written, a file that cannot be read
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        # Usage errors of the command-line parser (typer's click): exit_code 2 and a message.
        if getattr(exc, "exit_code", None) == 2 and hasattr(exc, "format_message"):
            print(f"error: {exc.format_message()}", file=sys.stderr)
            sys.exit(2)
        if type(exc).__name__ == "Abort":
            print("aborted", file=sys.stderr)
            sys.exit(130)
        raise
    sys.exit(code if isinstance(code, int) else 0)
