"""What the viewer shows: the directories given on the command line, each recognised as a run,
a run still training, a comparison report, a study, or a folder holding those; and the runs
they lead to (a comparison's inputs, a study's cells), each under a short id the page uses.

A run still training is recognised by its staging folder `.NAME.partial` beside the run
directory NAME (`testbed.rundir.writer`); once NAME exists, the same id shows the finished run.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import UserError

LIST_DEPTH = 3  # how deep a plain folder is searched for runs, reports and studies


@dataclass
class Source:
    id: str
    path: Path  # the run directory (for a run still training: where it will land), report or study
    label: str

    @property
    def stage(self) -> Path:
        return self.path.parent / f".{self.path.name}.partial"

    @property
    def kind(self) -> str:
        """run, live, comparison, study or folder: judged on every call, so a run that lands
        while the page is open becomes a run."""
        return kind_of(self.path) or "missing"


def final_path(path: Path) -> Path:
    """The run directory a staging folder `.NAME.partial` will become; other paths as they are."""
    name = path.name
    if name.startswith(".") and name.endswith(".partial"):
        return path.parent / name[1 : -len(".partial")]
    return path


def kind_of(path: Path) -> str | None:
    if (path / "scenario.yaml").is_file():
        return "run"
    if (path / "comparison.json").is_file():
        return "comparison"
    if (path / "study.json").is_file():
        return "study"
    if (path.parent / f".{path.name}.partial" / "scenario.yaml").is_file():
        return "live"
    if path.is_dir():
        return "folder"
    return None


def _label(path: Path, within: Path) -> str:
    """A listed directory as the page names it: its path under the folder given, and for a
    shard of the run store, the scenario's name (the entry's folder is a digest)."""
    label = str(path.relative_to(within))
    entry = path.parent / "entry.json"
    if entry.is_file():
        try:
            name = json.loads(entry.read_text()).get("name")
        except (OSError, ValueError):
            name = None
        if name:
            label = f"{name} {path.name} (run store {path.parent.name[:12]})"
    return label


class Library:
    """Every source by id. `roots` are the directories given: the only ones whose files are served."""

    def __init__(self, paths: list[Path]):
        self.sources: dict[str, Source] = {}
        self._by_path: dict[Path, str] = {}
        self._lock = threading.Lock()
        self.roots: list[Source] = []
        for given in paths:
            path = final_path(Path(given))
            if kind_of(path) is None:
                raise UserError(f"{given}: no such run, report, study or folder")
            self.roots.append(self.add(path, str(given)))

    def add(self, path: Path, label: str) -> Source:
        key = path.absolute()
        with self._lock:
            if key in self._by_path:
                return self.sources[self._by_path[key]]
            source = Source(str(len(self.sources)), key, label)
            self.sources[source.id] = source
            self._by_path[key] = source.id
            return source

    def get(self, sid: str) -> Source:
        if sid not in self.sources:
            raise KeyError(sid)
        return self.sources[sid]

    def listing(self, folder: Source) -> list[Source]:
        """The runs (finished or training), reports and studies under a folder."""
        found: list[Source] = []

        def walk(path: Path, depth: int) -> None:
            try:
                children = sorted(path.iterdir())
            except OSError:
                return
            for child in children:
                if not child.is_dir():
                    continue
                target = final_path(child)
                if target != child:  # a staging folder: a run still training, unless it has landed
                    if (child / "scenario.yaml").is_file() and not target.exists():
                        found.append(self.add(target, _label(target, folder.path)))
                    continue
                if child.name.startswith("."):
                    continue
                kind = kind_of(child)
                if kind in ("run", "comparison", "study"):
                    found.append(self.add(child, _label(child, folder.path)))
                elif depth > 1:
                    walk(child, depth - 1)

        walk(folder.path, LIST_DEPTH)
        return found

    def comparison_runs(self, report: Source) -> list[tuple[str, Source]]:
        """(label, run) of each input of a comparison report (comparison.json)."""
        data = json.loads((report.path / "comparison.json").read_text())
        out = []
        for entry in data.get("inputs", []):
            run = Path(entry["run"])
            run = run if run.is_absolute() else report.path / run
            out.append((entry["label"], self.add(run, entry["label"])))
        return out

    def study_cells(self, study: Source) -> tuple[dict, list[tuple[dict, Source]]]:
        """The study's manifest (study.json) and each cell with its run."""
        data = json.loads((study.path / "study.json").read_text())
        return data, [(cell, self.add(study.path / cell["run"], cell["label"])) for cell in data.get("cells", [])]
