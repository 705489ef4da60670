"""Scenario files in and out: a YAML mapping read with one clear line per way it can be wrong,
and a validated scenario written back in full (every default spelled out), loadable again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from testbed.config.seeds import format_seeds
from testbed.errors import UserError


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a scenario YAML file")
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: {where}invalid YAML: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
    except OSError as exc:  # the user's own file: unreadable is bad input
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except RecursionError:  # the YAML reader recurses once per level of brackets or indentation
        raise UserError(f"{path}: invalid YAML: nested too deeply") from None
    if data is None:
        # An empty file (or one of comments only) is almost always a mistake, not a request for
        # the default scenario: a file meant to train the defaults says `name: ...` at least.
        what = "is empty" if not text.strip() else "holds no scenario fields (only comments)"
        raise UserError(f"{path}: {what}; write at least `name: my_scenario` to train the defaults")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of scenario fields at the top level")
    data.setdefault("name", path.stem)
    return data


def _name_first(node: Any) -> Any:
    if isinstance(node, dict):
        items = [(k, _name_first(v)) for k, v in node.items()]
        return dict(sorted(items, key=lambda kv: kv[0] != "name"))
    if isinstance(node, list):
        return [_name_first(v) for v in node]
    return node


def to_yaml(scenario: BaseModel) -> str:
    """The fully resolved scenario (every default written out), loadable again as a scenario."""
    data = _name_first(scenario.model_dump(mode="json"))
    data["seeds"] = format_seeds(data["seeds"])
    return yaml.safe_dump(data, sort_keys=False)
