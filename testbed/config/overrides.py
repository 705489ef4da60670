"""Command-line overrides of scenario fields: `--set a.b.c=value`, values parsed as YAML."""

from __future__ import annotations

from typing import Any

import yaml

from testbed.errors import UserError
from testbed.config.validation_errors import is_plugin_field


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `--set a.b.c=value` overrides (values parsed as YAML) to the raw scenario mapping."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {item}: expected KEY=VALUE, like training.epochs=50")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = key.split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            node = _descend(node, part, tuple(parts[: i + 1]), item)
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise UserError(f"--set {item}: {last} is not an index of that list")
            node[int(last)] = value
        else:
            node[last] = value
    return data


# Plugin fields whose default is a plugin: `--set optimizer.lr=0.01` on a file without an
# optimizer section starts from that default plugin.
_PLUGIN_DEFAULTS = {("model", "norm"): "rms", ("model", "activation"): "gelu", ("optimizer",): "adam", ("curriculum",): "constant"}


def _descend(node: Any, part: str, path: tuple, item: str) -> Any:
    plugin_field = is_plugin_field(tuple(int(x) if x.isdigit() else x for x in path))
    if isinstance(node, list):
        if not part.isdigit() or int(part) >= len(node):
            raise UserError(f"--set {item}: {part} is not an index of that list")
        key: Any = int(part)
    elif isinstance(node, dict):
        key = part
        if node.get(key) is None:
            node[key] = {"name": _PLUGIN_DEFAULTS[path]} if path in _PLUGIN_DEFAULTS else {}
    else:
        raise UserError(f"--set {item}: cannot set a key inside a {type(node).__name__}")
    if plugin_field and isinstance(node[key], str):  # plugin shorthand: `norm: rms` -> {name: rms}
        node[key] = {"name": node[key]}
    if not isinstance(node[key], (dict, list)):
        raise UserError(f"--set {item}: {'.'.join(path)} is a {type(node[key]).__name__}, not a section")
    return node[key]
