"""The viewer's web app: a page of our own (static/) and a JSON API over `Run`, with frames from
`testbed.view.frames`.

Starlette (an ASGI toolkit) with uvicorn: routing and responses, nothing else; the page's few
hundred lines of JavaScript draw the tables and curves themselves, so every script and
stylesheet is served from this package and the app works offline. Read-only by construction:
no route writes, frames are encoded in memory, and files are served only from the directories
given, by paths inside them.
"""

# pyright: reportArgumentType=false, reportAttributeAccessIssue=false, reportCallIssue=false
# (pandas' types do not follow the run's columns)

from __future__ import annotations

import math
import threading
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from testbed.errors import UserError
from testbed.rundir.reader import Run
from testbed.view.frames import DPI, RunFrames
from testbed.view.sources import Library, Source

STATIC = Path(__file__).with_name("static")
MEDIA = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}


def _clean(value):
    """JSON-safe: NaN and infinities as None, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json(data, status: int = 200) -> JSONResponse:
    return JSONResponse(_clean(data), status_code=status, headers={"Cache-Control": "no-store"})


def _records(frame: pd.DataFrame) -> list[dict]:
    return [dict(zip(frame.columns, row)) for row in frame.itertuples(index=False)]


class Viewer:
    """The state behind the app: the sources and, per run, its frames."""

    def __init__(self, paths: list[Path], panels: list[str] | None = None, dpi: float = DPI):
        self.library = Library(paths)
        self.panels, self.dpi = panels, dpi
        self._frames: dict[str, RunFrames] = {}
        self._lock = threading.Lock()

    def frames(self, source: Source) -> RunFrames:
        with self._lock:
            if source.id not in self._frames:
                self._frames[source.id] = RunFrames(source.path, self.panels, self.dpi)
            return self._frames[source.id]

    def close(self) -> None:
        """Stop every background rendering."""
        with self._lock:
            for frames in self._frames.values():
                frames.close()

    # --- the JSON of each page -------------------------------------------------------------

    def sources(self) -> dict:
        out = []
        for root in self.library.roots:
            out.append(self._entry(root))
            if root.kind == "folder":
                out += [self._entry(s, within=root.id) for s in self.library.listing(root)]
        return {"sources": out}

    @staticmethod
    def _entry(source: Source, within: str | None = None) -> dict:
        return {"id": source.id, "kind": source.kind, "label": source.label, "path": str(source.path), "within": within}

    def run(self, source: Source) -> dict:
        kind = source.kind
        if kind == "live":
            run = Run(source.stage)
            metrics = run.checkpoint_metrics()
            rows = []
            if metrics is not None and len(metrics):
                last = metrics[metrics["epoch"] == metrics["epoch"].max()]
                rows = _records(last[["seed", "epoch", "train_acc", "test_acc", "test_loss"]])
            else:
                rows = [{"seed": s} for s in run.seeds]
            return {"id": source.id, "kind": kind, "name": run.scenario.name, "path": str(source.path), "seeds": rows,
                    "epochs": [], "total_epochs": run.scenario.training.epochs}
        if kind != "run":
            raise UserError(f"{source.path}: not a run directory")
        run = Run(source.path)
        table = self._seed_table(run)
        epochs = [int(e) for e in run.snapshots.epochs] if run.has("snapshots.npz") else []
        return {"id": source.id, "kind": kind, "name": run.scenario.name, "path": str(source.path), "seeds": table,
                "epochs": epochs, "total_epochs": run.scenario.training.epochs, "spike_steps": run.has("spike_steps.npz"),
                "no_frames": None if epochs else f"{source.path}: no snapshots.npz (add the snapshots probe to draw frames)"}

    @staticmethod
    def _seed_table(run: Run) -> list[dict]:
        summary = run.summary
        threshold = run.summary_json.get("success_threshold")
        columns = [c for c in ("seed", "test_acc", "train_acc", "test_loss", "train_loss", "spikes", "worst_spike_ratio") if c in summary]
        rows = _records(summary[columns])
        causes = run.spike_causes if run.has("spike_causes.csv") else None
        for row, record in zip(rows, summary.to_dict("records")):
            if threshold is not None:
                row["success"] = bool(record["test_acc"] > threshold)
            if "diverged_epoch" in record:
                row["diverged"] = int(record["diverged_epoch"]) if record["diverged_epoch"] >= 0 else None
            if causes is not None:
                counts = causes[causes["seed"] == row["seed"]]["cause"].value_counts()
                row["causes"] = ", ".join(f"{c} {n}" for c, n in counts.items())
        return rows

    def curves(self, source: Source, seed: int) -> dict:
        """The seed's evaluated metrics, and its spikes with their forensics where `testbed spikes` ran."""
        kind = source.kind
        run = Run(source.stage if kind == "live" else source.path)
        metrics = run.checkpoint_metrics() if kind == "live" else (run.metrics if run.has("metrics.csv") else None)
        out: dict = {"seed": seed, "kind": kind, "epoch": [], "spikes": []}
        if metrics is not None:
            m = metrics[metrics["seed"] == seed].sort_values("epoch")
            for c in ("epoch", "train_loss", "test_loss", "train_acc", "test_acc"):
                out[c] = m[c].tolist()
        if kind == "run":
            table = run.spike_causes if run.has("spike_causes.csv") else (run.spikes if run.has("spikes.csv") else None)
            if table is not None:
                out["spikes"] = _records(table[table["seed"] == seed])
        return out

    def comparison(self, source: Source) -> dict:
        runs = [{"label": label, "id": s.id, "kind": s.kind} for label, s in self.library.comparison_runs(source)]
        tables = {}
        for name in ("comparison.csv", "statistics.csv"):
            file = source.path / name
            if file.is_file():
                frame = pd.read_csv(file)
                tables[name] = {"columns": list(frame.columns), "rows": frame.astype(object).where(frame.notna(), None).values.tolist()}
        figures = sorted(p.relative_to(source.path).as_posix() for p in (source.path / "figures").glob("*.png")) if (source.path / "figures").is_dir() else []
        return {"id": source.id, "kind": "comparison", "path": str(source.path), "runs": runs, "tables": tables, "figures": figures,
                "report": (source.path / "report.html").is_file()}

    def study(self, source: Source) -> dict:
        manifest, cells = self.library.study_cells(source)
        out = []
        for cell, run_source in cells:
            entry = {"index": cell["index"], "label": cell["label"], "values": cell["values"], "run": run_source.id}
            try:
                run = Run(run_source.path)
                summary, threshold = run.summary, run.summary_json.get("success_threshold")
                entry["mean_test_acc"] = float(summary["test_acc"].mean())
                entry["success"] = float((summary["test_acc"] > threshold).mean()) if threshold is not None else None
                entry["seeds"] = len(summary)
                entry["spikes"] = int(summary["spikes"].sum()) if "spikes" in summary else None
            except UserError as exc:
                entry["error"] = str(exc)
            out.append(entry)
        figures = sorted(p.relative_to(source.path).as_posix() for p in (source.path / "figures").glob("*.png")) if (source.path / "figures").is_dir() else []
        return {"id": source.id, "kind": "study", "name": manifest.get("name"), "path": str(source.path), "axes": manifest.get("axes", []),
                "cells": out, "figures": figures, "report": (source.path / "report.html").is_file()}

    def file(self, sid: str, relative: str) -> Path | None:
        """The file `relative` inside given directory `sid`, or None: only the directories given
        on the command line are served, only by relative paths that stay inside them (no `..`,
        no absolute path, no symbolic link leading out)."""
        if sid not in {root.id for root in self.library.roots}:
            return None
        pure = PurePosixPath(relative)
        if not relative or pure.is_absolute() or ".." in pure.parts or "\\" in relative or ":" in relative:
            return None
        root = self.library.get(sid).path.resolve()
        target = (root / pure).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return None
        return target


def build_app(viewer: Viewer) -> Starlette:
    def source(request: Request) -> Source:
        return viewer.library.get(request.path_params["sid"])

    def api(handler):
        def endpoint(request: Request):
            try:
                return handler(request)
            except KeyError:
                return _json({"error": "not found"}, 404)
            except UserError as exc:
                return _json({"error": str(exc)}, 404)

        return endpoint

    def index(request: Request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    def frame(request: Request):
        src = source(request)
        seed, i, fmt = int(request.path_params["seed"]), int(request.path_params["i"]), request.path_params["fmt"]
        if fmt not in MEDIA or src.kind != "run":
            return _json({"error": "not found"}, 404)
        frames = viewer.frames(src)
        if not 0 <= i < len(frames.run.epochs):
            return _json({"error": f"frame {i}: out of range"}, 404)
        seed_frames = frames.seed(seed)
        body = seed_frames.png(i) if fmt == "png" else seed_frames.vector(i, fmt)
        epoch = int(frames.run.epochs[i])
        headers = {"Cache-Control": "private, max-age=3600", "X-Epoch": str(epoch)}
        if fmt != "png":
            headers["Content-Disposition"] = f'attachment; filename="{frames.run.scenario.name}-seed{seed}-epoch{epoch}.{fmt}"'
        return Response(body, media_type=MEDIA[fmt], headers=headers)

    def spike_frame(request: Request):
        """One of the two step-level frames of a spike (spike_steps.npz): which = 0 before, 1 after."""
        src = source(request)
        p = request.path_params
        if src.kind != "run" or p["which"] not in (0, 1):
            return _json({"error": "not found"}, 404)
        got = viewer.frames(src).spike(p["seed"], p["start"], p["end"])
        if got is None:
            return _json({"error": "no step-level weights kept for this spike (snapshots probe: spike_steps: true)"}, 404)
        frames, labels = got
        return Response(frames[p["which"]], media_type="image/png", headers={"Cache-Control": "private, max-age=3600", "X-Step": labels[p["which"]]})

    def served(request: Request):
        target = viewer.file(request.path_params["sid"], request.path_params["path"])
        if target is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(target)

    routes = [
        Route("/", index),
        Route("/api/sources", api(lambda r: _json(viewer.sources()))),
        Route("/api/run/{sid}", api(lambda r: _json(viewer.run(source(r))))),
        Route("/api/run/{sid}/curves/{seed:int}", api(lambda r: _json(viewer.curves(source(r), r.path_params["seed"])))),
        Route("/api/run/{sid}/frame/{seed:int}/{i:int}.{fmt}", api(frame)),
        Route("/api/run/{sid}/spike/{seed:int}/{start:int}-{end:int}/{which:int}.png", api(spike_frame)),
        Route("/api/comparison/{sid}", api(lambda r: _json(viewer.comparison(source(r))))),
        Route("/api/study/{sid}", api(lambda r: _json(viewer.study(source(r))))),
        Route("/files/{sid}/{path:path}", served),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)
