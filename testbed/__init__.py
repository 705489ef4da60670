"""testbed: a plugin-based optimizer and normalization testbed on a d=2 one-layer transformer.

The Python API (`testbed.api`): `load_scenario`, `run`, `load_run`, `compare`, `until_decided`, `power`, `sweep`, `barrier`,
`trajectories`, `spike_causes`, `figure`, and the objects they return, `Run`, `Comparison`, `StudyResult`,
`BarrierResult` and `TrajectoryMap`. Its names are imported on first use (PEP 562), so that
`import testbed` stays quick for the command line, loads neither torch nor matplotlib, and
changes no global state.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# public name -> the module that defines it
_API = {
    "load_scenario": "testbed.api",
    "run": "testbed.api",
    "load_run": "testbed.api",
    "compare": "testbed.api",
    "until_decided": "testbed.api",
    "power": "testbed.api",
    "sweep": "testbed.api",
    "barrier": "testbed.api",
    "figure": "testbed.api",
    "BarrierResult": "testbed.loss_barrier.barrier_command",
    "trajectories": "testbed.api",
    "spike_causes": "testbed.api",
    "SpikeForensics": "testbed.forensics.spike_causes",
    "TrajectoryMap": "testbed.trajectory.trajectory_map",
    "StudyResult": "testbed.study.sweep_report",
    "Run": "testbed.rundir.reader",
    "Snapshots": "testbed.rundir.reader",
    "Progress": "testbed.trainer",
    "Comparison": "testbed.comparison.result",
    "Analysing": "testbed.comparison.result",
    "Sequential": "testbed.comparison.until_decided",
    "PowerResult": "testbed.comparison.pilot",
    "UntilDecidedOptions": "testbed.comparison.options",
    "PowerOptions": "testbed.comparison.options",
    "UserError": "testbed.errors",
}
__all__ = [
    "load_scenario", "run", "load_run", "compare", "until_decided", "power", "sweep", "barrier", "trajectories", "spike_causes", "figure",
    "Run", "SpikeForensics", "BarrierResult", "TrajectoryMap", "Snapshots", "Progress", "Comparison", "Analysing",
    "Sequential", "PowerResult", "UntilDecidedOptions", "PowerOptions", "StudyResult", "UserError", "__version__",
]  # fmt: skip

if TYPE_CHECKING:
    from testbed.api import barrier, compare, figure, load_run, load_scenario, power, run, spike_causes, sweep, trajectories, until_decided
    from testbed.comparison.options import PowerOptions, UntilDecidedOptions
    from testbed.comparison.pilot import PowerResult
    from testbed.comparison.result import Analysing, Comparison
    from testbed.comparison.until_decided import Sequential
    from testbed.errors import UserError
    from testbed.forensics.spike_causes import SpikeForensics
    from testbed.loss_barrier.barrier_command import BarrierResult
    from testbed.rundir.reader import Run, Snapshots
    from testbed.study.sweep_report import StudyResult
    from testbed.trainer import Progress
    from testbed.trajectory.trajectory_map import TrajectoryMap


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'testbed' has no attribute {name!r}")
    value = getattr(import_module(_API[name]), name)
    globals()[name] = value  # found once, then an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
