"""How scenario problems are reported: one line per problem, with its path in the file
(`model.norm.radius: must be > 0`), whatever pydantic's own locations and wording."""

from __future__ import annotations

from pydantic import ValidationError

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


def _message(err: dict) -> str:
    template = _MESSAGES.get(err["type"])
    if template:
        ctx = {k: f"{v:g}" if isinstance(v, float) else v for k, v in (err.get("ctx") or {}).items()}
        return template.format(**ctx)
    msg = err["msg"]
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def format_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """(path, message) per error, deduplicated, in the file's order."""
    seen: dict[tuple[str, str], None] = {}
    for err in exc.errors():
        seen[(_clean_loc(tuple(err["loc"])), _message(err))] = None
    return list(seen)


class ScenarioError(UserError):
    """Every problem of a scenario, each with its path in the file."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{printable(source)}: {path}: {msg}" for path, msg in problems))
