"""What a plugin is: a name, a pydantic model of its parameters and a builder whose product is
an instance of its kind's base class (checked when it is built, so a wrong object fails with
one line naming the plugin instead of deep inside training or rendering)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from testbed.errors import UserError


class Params(BaseModel):
    """Base of every plugin's parameter model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Plugin:
    """A named, parameterised builder. Made by the `@plugin` decorator; the registry fills in
    `kind`, `base` (the class its products must be instances of) and `source` (the distribution
    that provides it), since the hook it comes through decides its kind."""

    name: str
    params: type[Params]
    factory: Callable[..., Any]
    doc: str = ""
    kind: str = field(default="", compare=False)
    base: type = field(default=object, compare=False)
    source: str = field(default="", compare=False)

    def build(self, params: Params, *context: Any) -> Any:
        """The plugin's object for `params` (and, for a curriculum, the task)."""
        made = self.factory(params, *context)
        if not isinstance(made, self.base):
            raise UserError(
                f"{self.kind} plugin '{self.name}' ({self.source}): build returned {_describe(made)}, "
                f"not an instance of testbed.plugin_api.{self.base.__name__}; subclass it (see docs/plugins.md)"
            )
        return made


def _describe(obj: Any) -> str:
    if obj is None:
        return "None"
    kind = type(obj)
    return f"a {kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else f"a {kind.__name__}"


def plugin(name: str, params: type[Params] = Params) -> Callable[[Callable[..., Any]], Plugin]:
    """Decorator turning a builder function into a `Plugin`; the first line of its docstring is
    the description `testbed plugins` shows."""

    def wrap(build: Callable[..., Any]) -> Plugin:
        doc = (build.__doc__ or "").strip().splitlines()
        return Plugin(name=name, params=params, factory=build, doc=doc[0] if doc else "")

    return wrap
