"""What a plugin is: a name, a pydantic model of its parameters and a builder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Base of every plugin's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Plugin:
    """A named, parameterised builder. `source` is filled in by the registry."""

    name: str
    params: type[Params]
    build: Callable[..., Any]
    doc: str = ""
    source: str = field(default="", compare=False)


def plugin(name: str, params: type[Params] = Params) -> Callable[[Callable[..., Any]], Plugin]:
    """Decorator turning a builder function into a `Plugin`; its docstring is the description."""

    def wrap(build: Callable[..., Any]) -> Plugin:
        doc = (build.__doc__ or "").strip().splitlines()
        return Plugin(name=name, params=params, build=build, doc=doc[0] if doc else "")

    return wrap
