"""Resolve plugins by kind and name through pluggy and the `testbed.plugins` entry points."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache
from importlib import metadata
from types import ModuleType

import pluggy

from testbed.errors import UserError
from testbed.plugin_api.base import Plugin
from testbed.plugin_api.hookspecs import BASES, ENTRY_POINT_GROUP, KINDS, PROJECT, TestbedSpecs


class Registry:
    """Every plugin of every kind, indexed by name."""

    def __init__(self, plugins: dict[str, dict[str, Plugin]]):
        self.plugins = plugins

    @classmethod
    def load(cls, extra: Iterable[ModuleType] = ()) -> Registry:
        """Load the entry-point plugins (built-ins included) plus `extra` modules."""
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(TestbedSpecs)
        check_entry_point_names()
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        for module in extra:
            pm.register(module)
        sources = {id(p): f"{dist.project_name} {dist.version}" for p, dist in pm.list_plugin_distinfo()}
        plugins: dict[str, dict[str, Plugin]] = {}
        for kind, hook_name in KINDS.items():
            found: dict[str, Plugin] = {}
            for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
                module = impl.plugin
                where = sources.get(id(module), getattr(module, "__name__", str(module)))
                for p in impl.function() or []:
                    if not isinstance(p, Plugin):
                        raise UserError(f"{where}: {hook_name} returned {p!r}, not a Plugin; decorate its builder with @plugin")
                    if p.name in found:
                        raise UserError(
                            f"{kind} plugin '{p.name}' is registered twice: by {found[p.name].source} and by {where}"
                        )
                    found[p.name] = replace(p, kind=kind, base=BASES[kind], source=where)
            plugins[kind] = found
        return cls(plugins)

    def names(self, kind: str) -> list[str]:
        return sorted(self.plugins[kind])

    def get(self, kind: str, name: str) -> Plugin:
        """The plugin, or a UserError that lists the close matches."""
        try:
            return self.plugins[kind][name]
        except KeyError:
            raise UserError(unknown_message(kind, name, self.names(kind))) from None


def check_entry_point_names() -> None:
    """pluggy registers each entry point's module under the entry point's name and skips any
    later one of the same name, so two packages declaring the same name would lose one of
    them without a word; say so instead."""
    owners: dict[str, tuple[str, str]] = {}
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            name = dist.metadata["Name"] or "?"
            key, owner = re.sub(r"[-_.]+", "-", name).lower(), f"{name} {dist.version}"
            first = owners.setdefault(ep.name, (key, owner))
            if first[0] != key:
                raise UserError(
                    f"entry point '{ep.name}' of group {ENTRY_POINT_GROUP} is declared by both {first[1]} and {owner}; "
                    "only one would load: give one of them another name"
                )


def unknown_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return f"unknown {kind} '{name}': {hint}known: {', '.join(known)}"


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of installed plugins, loaded once per process."""
    return Registry.load()
