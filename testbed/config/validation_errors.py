"""How scenario problems are reported: one line per problem, with its path in the file
(`model.norm.radius: must be > 0`), whatever pydantic's own locations and wording."""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from testbed.errors import UserError

_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "extra_forbidden": "unknown key",
    "missing": "required",
}

PLUGIN_FIELDS = {("model", "norm"), ("model", "embedding_norm"), ("model", "mlp_norm"), ("model", "activation")}
PLUGIN_ROOTS = {"optimizer", "curriculum"}


def printable(text: str) -> str:
    """User text (a key, a flag) as a one-line message can show it: line breaks and other
    control characters escaped, since a key named "a\\nb" would split its error line in two."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def is_plugin_field(loc: tuple) -> bool:
    """Whether `loc` is where a scenario names a plugin (a union of plugin models tagged by name)."""
    return loc in PLUGIN_FIELDS or (len(loc) == 1 and loc[0] in PLUGIN_ROOTS) or (
        len(loc) == 2 and loc[0] == "probes" and isinstance(loc[1], int)
    )


def _clean_loc(loc: tuple) -> str:
    """Drop pydantic's union tags (plugin names, 'int', 'literal[...]') from an error location."""
    out: list = []
    skip_tag = False
    for part in loc:
        if skip_tag:
            skip_tag = False
            continue  # the discriminator tag of a plugin union
        if isinstance(part, str) and (part.startswith(("literal[", "function-", "nullable[")) or part in ("int", "str")):
            continue
        out.append(part)
        skip_tag = is_plugin_field(tuple(out))
    return printable(".".join(str(p) for p in out)) or "(top level)"


def _message(err: ErrorDetails) -> str:
    template = _MESSAGES.get(err["type"])
    if template:
        ctx = {k: f"{v:g}" if isinstance(v, float) else v for k, v in (err.get("ctx") or {}).items()}
        return template.format(**ctx)
    msg = err["msg"]
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def format_errors(exc: ValidationError, model: type[BaseModel] | None = None) -> list[tuple[str, str]]:
    """(path, message) per error, deduplicated, in the file's order; an unknown key of `model`
    gets the known keys closest to it."""
    seen: dict[tuple[str, str], None] = {}
    for err in exc.errors():
        loc = tuple(err["loc"])
        message = _message(err)
        if err["type"] == "extra_forbidden" and model is not None:
            message += _suggestion(model, loc)
        seen[(_clean_loc(loc), message)] = None
    return list(seen)


def _suggestion(model: type[BaseModel], loc: tuple) -> str:
    """'; did you mean training.epochs?' for the unknown key at `loc` (pydantic's location,
    with its union tags), or '' when no known key is close."""
    keys = _keys_at(model, loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.6)
    if not close:
        return ""
    parent = _clean_loc(loc[:-1])
    return f"; did you mean {close[0] if parent == '(top level)' else parent + '.' + close[0]}?"


def _keys_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the section at `loc`, found by following the schema's types."""
    node: Any = model
    for part in loc:
        node = _step(node, part)
    node = _members(node)
    return [name for m in node if isinstance(m, type) and issubclass(m, BaseModel) for name in m.model_fields]


def _members(tp: Any) -> list[Any]:
    """The types a value of `tp` may have: unions flattened, Annotated unwrapped."""
    if get_origin(tp) is Annotated:
        return _members(get_args(tp)[0])
    if get_origin(tp) in (Union, types.UnionType):
        return [m for arg in get_args(tp) for m in _members(arg)]
    return [tp]


def _step(tp: Any, part: Any) -> Any:
    """The type one step further along a location: a field, a list item, a union's member by its tag."""
    members = _members(tp)
    if isinstance(part, int):
        return next((get_args(m)[0] for m in members if get_origin(m) is list), None)
    for m in members:
        if isinstance(m, type) and issubclass(m, BaseModel) and part in m.model_fields:
            return m.model_fields[part].annotation
    for m in members:  # a union's tag: a plugin's name, or a member class's name
        if isinstance(m, type) and issubclass(m, BaseModel):
            name = m.model_fields.get("name")
            if (name is not None and get_origin(name.annotation) is Literal and part in get_args(name.annotation)) or part == m.__name__ or (
                isinstance(part, str) and part.endswith(f", {m.__name__}]")
            ):
                return m
    return tp if isinstance(part, str) and part.startswith(("literal[", "function-", "nullable[")) else None


class ScenarioError(UserError):
    """Every problem of a scenario, each with its path in the file."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{printable(source)}: {path}: {msg}" for path, msg in problems))
