"""A plugin named in a scenario: `norm: rms`, or a mapping with a `name` and that plugin's
options (`norm: {name: rms, radius: 2}`).

The scenario's classes declare such a field with a `PluginRef` type of its kind (`NormRef`,
`OptimizerRef`, ...), which says to a reader and a type checker that the value has a `name`.
What options it takes is known only to the installed plugins, so the registry validates it:
`plugin_union` turns a kind into a union of the plugins' own options models, tagged by name,
and each validated value is an instance of that plugin's options model *and* of the field's
`PluginRef` class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import BeforeValidator, Discriminator, Field, GetCoreSchemaHandler, create_model
from pydantic_core import CoreSchema

from testbed.plugin_api.base import Params
from testbed.plugin_api.registry import Registry, default_registry

if TYPE_CHECKING:
    _Options = Params  # what every reference is at run time: its plugin's options model, a Params
else:
    _Options = object  # the plugin's options model comes first among a reference's bases (`plugin_union`)


class PluginRef(_Options):
    """A plugin by name with its options; the options model is the plugin's own (`Plugin.params`)."""

    kind: ClassVar[str] = ""

    if TYPE_CHECKING:  # declared for readers and type checkers only: the plugin's options model holds the fields
        name: str

        def __getattr__(self, option: str) -> Any: ...

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        """A scenario class validated directly (not through `scenario_model(registry)`) takes the
        installed plugins."""
        return handler.generate_schema(plugin_union(cls.kind, default_registry()))


class NormRef(PluginRef):
    kind = "norm"


class ActivationRef(PluginRef):
    kind = "activation"


class OptimizerRef(PluginRef):
    kind = "optimizer"


class CurriculumRef(PluginRef):
    kind = "curriculum"


class ProbeRef(PluginRef):
    kind = "probe"


REFS: dict[str, type[PluginRef]] = {ref.kind: ref for ref in (NormRef, ActivationRef, OptimizerRef, CurriculumRef, ProbeRef)}


def plugin_union(kind: str, registry: Registry) -> Any:
    """The annotated type of a plugin reference of `kind`: a union of its plugins' options
    models, each with a `name` tag, discriminated by that name."""
    models: dict[str, type[Params]] = {}
    for name in registry.names(kind):
        p = registry.get(kind, name)
        models[name] = create_model(
            f"{kind.title()}_{name}",
            __base__=(p.params, REFS[kind]),
            __doc__=p.doc or None,
            name=(Literal[name], Field(description=f"{kind} plugin '{name}'")),  # type: ignore[valid-type]  # a tag made at run time
        )

    def coerce(value: Any) -> Any:
        if isinstance(value, str):
            value = {"name": value}
        if isinstance(value, dict):
            name = value.get("name")
            if name is None:
                raise ValueError(f"{kind} needs a name, one of: {', '.join(models)}")
            if not isinstance(name, str):  # a list or a mapping there cannot even be looked up
                raise ValueError(f"{kind} name must be a string, one of: {', '.join(models)}")
            if name not in models:
                raise ValueError(registry.unknown_message(kind, name, list(models)))
        return value

    members = tuple(models.values())
    union = members[0] if len(members) == 1 else Annotated[Union[members], Discriminator("name")]  # noqa: UP007 (a union built at run time)
    return Annotated[union, BeforeValidator(coerce)]
