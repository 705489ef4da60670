"""What identifies a run in the store: the resolved scenario less what does not change a
trajectory or its files (name, description, seeds, output folder), and the code that trains
it: testbed's, torch's and every plugin's version, and the content of testbed's and each
plugin's files, numpy's version and the determinism mode (`testbed.rundir.code_identity`), so
that an edited file, even of an editable install under the same version, is a new key. Seeds are not part of it: a seed's
trajectory does not depend on the others, so runs of one key on other seed sets combine."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

import testbed
from testbed.config.schema import Scenario
from testbed.engine.device import resolve
from testbed.rundir import code_identity, provenance
from testbed.rundir.warm_start import Source

NOT_KEYED = ("name", "description", "seeds", "output")


def identity(scenario: Scenario) -> dict[str, Any]:
    """The content the key is the digest of (kept beside the runs, as entry.json)."""
    fields = {k: v for k, v in scenario.model_dump(mode="json").items() if k not in NOT_KEYED}
    _key_device(fields, scenario)
    init = fields["model"]["init"]
    if isinstance(init, dict):  # a warm start: keyed by what it starts from, not where that lies
        fields["model"]["init"] = {k: v for k, v in init.items() if k not in ("run", "scenario")} | source_identity(scenario.model.init)
    plugins = provenance.plugin_records(scenario)
    return {
        "scenario": fields,
        "testbed": str(testbed.__version__),
        "torch": str(torch.__version__),
        "plugins": plugins,
        "code": code_identity.identity(plugins),
    }


def _key_device(fields: dict[str, Any], scenario: Scenario) -> None:
    """`training.compile` is part of the key only when on (it changes the arithmetic), and
    `training.engine` only when not `reference` (`auto` as the engine it picks). The
    training device is part of the key only off the CPU: results are bit-identical
    per device, not across devices, and the field came after runs were stored (which trained
    on the CPU and keep their keys). `auto` is keyed as the device it resolves to here."""
    training = fields.get("training")
    if not isinstance(training, dict) or "device" not in training:
        return
    if training.get("compile") is False:  # the default step: keys as before the option existed
        del training["compile"]
    if training.get("engine") == "auto":  # keyed as the engine it picks (the plugins decide)
        training["engine"] = "reference" if _fused_gap(scenario) else "fused"
    if training.get("engine") == "reference":  # likewise: the fused engine's runs are other numbers
        del training["engine"]
    device = resolve(training["device"])
    if device == "cpu":
        del training["device"]
    else:
        training["device"] = device


def _fused_gap(scenario: Scenario) -> str | None:
    from testbed.engine.fused.validation import scenario_gap
    from testbed.plugin_api.registry import default_registry

    return scenario_gap(scenario, default_registry())


def source_identity(init) -> dict[str, Any]:
    """A source scenario by its own identity (so that its runs on any seeds give one key), a
    source run directory by the digest of its snapshots."""
    if init.scenario is not None:
        from testbed.rundir.scenarios import load

        return {"source": identity(load(init.scenario))}
    return {"snapshots_sha256": Source.read(init.run).digest()}


def digest(ident: dict[str, Any]) -> str:
    """20 hexadecimal digits of the SHA-256 of the identity's canonical JSON."""
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]
