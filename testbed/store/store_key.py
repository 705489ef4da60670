"""What identifies a run in the store: the resolved scenario less what does not change a
trajectory or its files (name, description, seeds, output folder), and the code that trains
it (testbed's, torch's and every plugin's version). Seeds are not part of it: a seed's
trajectory does not depend on the others, so runs of one key on other seed sets combine."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

import testbed
from testbed.rundir import provenance
from testbed.rundir.warm_start import Source

NOT_KEYED = ("name", "description", "seeds", "output")


def identity(scenario) -> dict[str, Any]:
    """The content the key is the digest of (kept beside the runs, as entry.json)."""
    fields = {k: v for k, v in scenario.model_dump(mode="json").items() if k not in NOT_KEYED}
    init = fields["model"]["init"]
    if isinstance(init, dict):  # a warm start: keyed by what it starts from, not where that lies
        fields["model"]["init"] = {k: v for k, v in init.items() if k not in ("run", "scenario")} | source_identity(scenario.model.init)
    return {
        "scenario": fields,
        "testbed": str(testbed.__version__),
        "torch": str(torch.__version__),
        "plugins": provenance.plugin_records(scenario),
    }


def source_identity(init) -> dict[str, Any]:
    """A source scenario by its own identity (so that its runs on any seeds give one key), a
    source run directory by the digest of its snapshots."""
    if init.scenario is not None:
        from testbed.config.scenario import load

        return {"source": identity(load(init.scenario))}
    return {"snapshots_sha256": Source.read(init.run).digest()}


def digest(ident: dict[str, Any]) -> str:
    """20 hexadecimal digits of the SHA-256 of the identity's canonical JSON."""
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]
