"""Overrides of scenario fields: `--set a.b.c=value` on the command line (values parsed as
YAML), or a mapping of dotted keys to Python values in the Python API."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from testbed.config.validation_errors import is_plugin_field, printable
from testbed.errors import UserError


def apply_overrides(data: dict, overrides: Sequence[str] | Mapping[str, Any]) -> dict:
    """Apply overrides to the raw scenario mapping: `--set a.b.c=value` strings (values parsed
    as YAML), or a mapping {"a.b.c": value}."""
    items = _from_mapping(overrides) if isinstance(overrides, Mapping) else _from_strings(overrides)
    for key, value, item in items:
        parts = key.split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            node = _descend(node, part, tuple(parts[: i + 1]), item)
        last = parts[-1]
        if isinstance(node, list):
            if not _is_index(last) or int(last) >= len(node):
                raise UserError(f"{item}: {printable(last)} is not an index of that list")
            node[int(last)] = value
        else:
            node[last] = value
    return data


def _from_strings(overrides: Iterable[str]) -> Iterable[tuple[str, Any, str]]:
    """(key, value, how errors name it) of each `--set KEY=VALUE`."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {printable(item)}: expected KEY=VALUE, like training.epochs=50")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        yield key, value, f"--set {printable(item)}"


def _from_mapping(overrides: Mapping[str, Any]) -> Iterable[tuple[str, Any, str]]:
    for key, value in overrides.items():
        if not isinstance(key, str) or not key.strip():
            raise UserError(f"override {key!r}: expected a dotted field name, like 'training.epochs'")
        yield key.strip(), copy.deepcopy(value), f"override {printable(key)}={value!r}"  # the caller's value stays theirs


# Plugin fields whose default is a plugin: `--set optimizer.lr=0.01` on a file without an
# optimizer section starts from that default plugin.
_PLUGIN_DEFAULTS = {("model", "norm"): "rms", ("model", "activation"): "gelu", ("optimizer",): "adam", ("curriculum",): "constant"}


def _is_index(part: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²', which int() refuses."""
    return part.isascii() and part.isdigit()


def _descend(node: Any, part: str, path: tuple, item: str) -> Any:
    plugin_field = is_plugin_field(tuple(int(x) if _is_index(x) else x for x in path))
    if isinstance(node, list):
        if not _is_index(part) or int(part) >= len(node):
            raise UserError(f"{item}: {printable(part)} is not an index of that list")
        key: Any = int(part)
    elif isinstance(node, dict):
        key = part
        if node.get(key) is None:
            node[key] = {"name": _PLUGIN_DEFAULTS[path]} if path in _PLUGIN_DEFAULTS else {}
    else:
        raise UserError(f"{item}: cannot set a key inside a {type(node).__name__}")
    if plugin_field and isinstance(node[key], str):  # plugin shorthand: `norm: rms` -> {name: rms}
        node[key] = {"name": node[key]}
    if not isinstance(node[key], (dict, list)):
        raise UserError(f"{item}: {printable('.'.join(path))} is a {type(node[key]).__name__}, not a section")
    return node[key]
