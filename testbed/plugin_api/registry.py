"""Resolve plugins by kind and name through pluggy and the `testbed.plugins` entry points.

Entry points are loaded one distribution at a time: a package that fails (an import error, a
hook that raises) is set aside as broken, with its error, and every other package's plugins
stay usable; the registry lists the broken ones so that a caller can say so.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import metadata
from types import ModuleType

import pluggy

from testbed.errors import UserError
from testbed.plugin_api.base import Plugin
from testbed.plugin_api.hookspecs import BASES, ENTRY_POINT_GROUP, KINDS, PROJECT, TestbedSpecs


@dataclass(frozen=True)
class BrokenPackage:
    """An installed plugin package that failed to load: none of its plugins are registered."""

    distribution: str  # "name version", as a plugin's `source`
    error: str  # one line: "ModuleNotFoundError: No module named 'x'"

    def message(self) -> str:
        return f"plugin package {self.distribution} failed to load ({self.error}); its plugins are unavailable"


class BrokenPluginPackage(UserWarning):
    """Warned once per process for each broken plugin package (the command line prints its own line instead)."""


class NotAPlugin(UserError):
    """A registration hook returned something not made by `@plugin`."""


class Registry:
    """Every plugin of every kind, indexed by name, and the plugin packages that failed to load."""

    def __init__(self, plugins: dict[str, dict[str, Plugin]], broken: Sequence[BrokenPackage] = ()):
        self.plugins = plugins
        self.broken = tuple(broken)

    @classmethod
    def load(cls, extra: Iterable[ModuleType] = ()) -> Registry:
        """Load the entry-point plugins (built-ins included) plus `extra` modules. A failing
        `extra` module raises (its caller handed it over); a failing installed package is
        recorded in `broken` instead, so that one bad package does not stop every command."""
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(TestbedSpecs)
        owners: dict[int, str] = {}  # id(module) -> "distribution version" of entry-point modules
        broken: dict[str, str] = {}  # "distribution version" -> its error
        for owner, entry_points in plugin_distributions():
            try:
                for ep in entry_points:
                    module = ep.load()
                    if pm.get_name(module) is None:  # two entry points may name one module
                        pm.register(module, name=ep.name)
                    owners.setdefault(id(module), owner)
            except Exception as exc:  # the package's own fault, whatever it is
                broken[owner] = _one_line(exc)
        for module in extra:
            pm.register(module)

        made: list[tuple[str, str | None, str, list[Plugin]]] = []  # (kind, owner, where, plugins)
        for kind, hook_name in KINDS.items():
            for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
                owner = owners.get(id(impl.plugin))
                where = owner or getattr(impl.plugin, "__name__", str(impl.plugin))
                if owner in broken:
                    continue
                try:
                    made.append((kind, owner, where, _plugins_of(impl.function(), hook_name)))
                except Exception as exc:
                    if owner is None:
                        if isinstance(exc, NotAPlugin):
                            raise NotAPlugin(f"{where}: {exc}") from None
                        raise
                    broken[owner] = str(exc) if isinstance(exc, NotAPlugin) else f"{hook_name} raised {_one_line(exc)}"

        plugins: dict[str, dict[str, Plugin]] = {kind: {} for kind in KINDS}
        for kind, owner, where, found in made:
            if owner in broken:  # another of its hooks failed: none of its plugins count
                continue
            for p in found:
                if p.name in plugins[kind]:
                    raise UserError(f"{kind} plugin '{p.name}' is registered twice: by {plugins[kind][p.name].source} and by {where}")
                plugins[kind][p.name] = replace(p, kind=kind, base=BASES[kind], source=where)
        return cls(plugins, [BrokenPackage(owner, error) for owner, error in broken.items()])

    def names(self, kind: str) -> list[str]:
        return sorted(self.plugins[kind])

    def get(self, kind: str, name: str) -> Plugin:
        """The plugin, or a UserError that lists the close matches."""
        try:
            return self.plugins[kind][name]
        except KeyError:
            raise UserError(self.unknown_message(kind, name)) from None

    def unknown_message(self, kind: str, name: str, known: list[str] | None = None) -> str:
        """What to say of a name that no plugin of `kind` has: the close matches, and the broken
        packages, any of which might have provided it (which names they hold is unknowable)."""
        message = unknown_message(kind, name, self.names(kind) if known is None else known)
        for b in self.broken:
            message += f"; note: plugin package {b.distribution} failed to load ({b.error})"
        return message


def _plugins_of(returned, hook_name: str) -> list[Plugin]:
    found = list(returned or [])
    for p in found:
        if not isinstance(p, Plugin):
            raise NotAPlugin(f"{hook_name} returned {p!r}, not a Plugin; decorate its builder with @plugin")
    return found


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def plugin_distributions() -> list[tuple[str, list[metadata.EntryPoint]]]:
    """("name version", its entry points) of each installed distribution in the `testbed.plugins`
    group, in the order Python finds them; an entry-point name already seen (the same package
    found twice on the path) is skipped, as pluggy does. Two packages declaring the same
    entry-point name are a UserError: only one of them could load."""
    owners: dict[str, tuple[str, str]] = {}  # entry-point name -> (normalised name, "name version") declaring it
    found: list[tuple[str, list[metadata.EntryPoint]]] = []
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or "?"
        key, owner = re.sub(r"[-_.]+", "-", name).lower(), f"{name} {dist.version}"
        entry_points = []
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            first = owners.setdefault(ep.name, (key, owner))
            if first[0] != key:
                raise UserError(
                    f"entry point '{ep.name}' of group {ENTRY_POINT_GROUP} is declared by both {first[1]} and {owner}; "
                    "only one would load: give one of them another name"
                )
            if ep.name not in {e.name for _, eps in found for e in eps}:
                entry_points.append(ep)
        if entry_points:
            found.append((owner, entry_points))
    return found


def check_entry_point_names() -> None:
    """Raise a UserError if two packages declare the same entry-point name (pluggy would
    silently load only one of them)."""
    plugin_distributions()


def unknown_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return f"unknown {kind} {name!r}: {hint}known: {', '.join(known)}"  # repr: a name with a line break stays on one line


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of installed plugins, loaded once per process; each broken plugin package
    is warned of once (BrokenPluginPackage), never printed."""
    registry = Registry.load()
    for b in registry.broken:
        warnings.warn(b.message(), BrokenPluginPackage, stacklevel=2)
    return registry
