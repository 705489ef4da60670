"""Regenerate the reference parts of docs/plugins.md from the code, where each kind's contract is
written once: the table of kinds (from the hook specifications and the base classes) and the
"Reference" section (the hooks' and the base classes' docstrings, member by member).

    python docs/plugin_reference.py          # rewrite them in docs/plugins.md
    python docs/plugin_reference.py --check  # exit 1 if the page differs

tests/test_plugin_manual.py fails while the committed page differs from what this writes, so
the page cannot drift from the code; edit the docstrings, then run this.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import sys
import textwrap
from pathlib import Path

from testbed.plugin_api import hookspecs
from testbed.plugin_api.differentiable import Differentiable
from testbed.plugin_api.probe import Evaluation, RunInfo
from testbed.plugin_api.update_rule import OptimizerParams

PAGE = Path(__file__).with_name("plugins.md")
MARKERS = {
    "kinds": ("<!-- generated: the table of kinds, by docs/plugin_reference.py -->", "<!-- end of the table of kinds -->"),
    "reference": ("<!-- generated: the reference, by docs/plugin_reference.py -->", "<!-- end of the reference -->"),
}
# What each kind's objects are given or share, rendered after the kind's base class.
COMPANIONS: dict[str, tuple[type, ...]] = {"optimizer": (OptimizerParams,), "probe": (RunInfo, Evaluation)}
SHARED = {"norm": Differentiable}  # rendered once, before the first kind that shares it


def doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "")


def signature(name: str, fn) -> str:
    """`name(a, b) -> R`, without self, annotations of the arguments left out (the docstrings say them)."""
    sig = inspect.signature(fn)
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    args = ", ".join(stars.get(p.kind, "") + p.name for p in sig.parameters.values() if p.name not in ("self", "cls"))
    ret = sig.return_annotation
    ret = "" if ret is inspect.Signature.empty else f" -> {ret if isinstance(ret, str) else inspect.formatannotation(ret)}"
    return f"{name}({args}){ret}"


def attribute_docs(cls: type) -> dict[str, str]:
    """name -> docstring of each attribute documented in `cls`'s own source: a string right after
    a class-level assignment, or after `self.name = ...` in `__init__`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    found: dict[str, str] = {}

    def scan(body: list[ast.stmt], instance: bool) -> None:
        for prev, stmt in zip(body, body[1:]):
            if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)):
                continue
            targets = [prev.target] if isinstance(prev, ast.AnnAssign) else prev.targets if isinstance(prev, ast.Assign) else []
            for t in targets:
                if instance and isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                    found[t.attr] = inspect.cleandoc(stmt.value.value)
                elif not instance and isinstance(t, ast.Name):
                    found[t.id] = inspect.cleandoc(stmt.value.value)

    scan(tree.body, instance=False)
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "__init__":
            scan(stmt.body, instance=True)
    return found


def public_names(cls: type) -> list[str]:
    """The public members `cls` itself defines, in source order: methods, properties and
    attributes (annotated, assigned or set in `__init__`), with `__call__`."""
    names = [n for n in vars(cls) if n == "__call__" or not n.startswith("_")]
    names += [n for n in vars(cls).get("__annotations__", {}) if not n.startswith("_") and n not in names]
    names += [n for n in attribute_docs(cls) if n not in names]
    return names


def member(cls: type, name: str) -> tuple[str, str]:
    """(title, docstring) of one public member of `cls`: its call signature, or the property,
    or the attribute with its type and default. (Each docstring says whether it is required.)"""
    raw = vars(cls).get(name)
    if isinstance(raw, (classmethod, staticmethod)):
        raw = raw.__func__
    if isinstance(raw, property):
        return f"`{cls.__name__}.{name}` (property)", doc(raw.fget)
    if inspect.isfunction(raw):
        return f"`{cls.__name__}.{signature(name, raw)}`", doc(raw)
    annotation = vars(cls).get("__annotations__", {}).get(name)
    typed = f": {annotation}" if isinstance(annotation, str) else ""
    value = f" = {raw!r}" if name in vars(cls) else ""
    return f"`{cls.__name__}.{name}{typed}{value}`", attribute_docs(cls).get(name, "")


def contract(cls: type) -> list[str]:
    """Every public method of the kind's base class and of the plugin_api classes it extends."""
    chain = [c for c in reversed(cls.__mro__) if c.__module__.startswith("testbed.plugin_api.")]
    seen: dict[str, type] = {}
    for c in chain:
        for name in public_names(c):
            if inspect.isfunction(vars(c).get(name)) or name == "__call__":
                seen[name] = cls if name in vars(cls) else c
    return [n for n in seen]


def kinds_table() -> str:
    rows = [
        "| kind | hook | chosen in a scenario by | `build` receives | returns a subclass of | must implement | may implement |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, hook in hookspecs.KINDS.items():
        spec = doc(getattr(hookspecs.TestbedSpecs, hook))
        chosen = spec.splitlines()[0].rstrip(".")
        receives = re.search(r"``build\((.*?)\) -> ", spec).group(1)
        base = hookspecs.BASES[kind]
        names = contract(base)
        required = [n for n in names if getattr(getattr(base, n), "__isabstractmethod__", False)]
        optional = [n for n in names if n not in required and doc(getattr(base, n)).startswith("Optional")]
        settable = [n for n, text in attribute_docs(base).items() if text.startswith("Class attribute")]

        def call(n: str, base: type = base) -> str:
            fn = getattr(base, n)
            return f"`{signature(n, fn.__func__ if inspect.ismethod(fn) else fn).split(' -> ')[0]}`"

        rows.append(
            f"| {kind} | `{hook}` | {chosen} | {receives} | [`{base.__name__}`](#{base.__name__.lower()}) "
            f"| {', '.join(map(call, required))} | {', '.join([*map(call, optional), *(f'`{n}`' for n in settable)])} |"
        )
    return "\n".join(rows)


def section(cls: type, heading: str) -> list[str]:
    out = [f"### {cls.__name__}", "", heading, "", doc(cls), ""]
    if dataclasses.is_dataclass(cls):
        out += ["Fields: " + ", ".join(f"`{f.name}: {f.type}`" for f in dataclasses.fields(cls)) + ".", ""]
    if cls is OptimizerParams:
        for name, field in cls.model_fields.items():
            default = field.default_factory() if field.default_factory is not None else field.default
            out += [f"- `{name}` (default `{default!r}`): {field.description}"]
        out += [""]
        return out
    for name in public_names(cls):
        if dataclasses.is_dataclass(cls) and name in {f.name for f in dataclasses.fields(cls)}:
            continue
        title, text = member(cls, name)
        out += [f"**{title}**", "", text, ""]
    return out


def reference() -> str:
    out = [
        "Generated from the docstrings of `testbed.plugin_api` by `docs/plugin_reference.py`; the test of",
        "this page fails when it differs from them. `help()` shows the same text, for example",
        "`python -c \"import testbed.plugin_api as p; help(p.Norm)\"`.",
        "",
    ]
    for kind, hook in hookspecs.KINDS.items():
        if kind in SHARED:
            shared = SHARED[kind]
            out += section(shared, "What `Norm` and `Activation` share (`testbed.plugin_api.differentiable`).")
        spec = doc(getattr(hookspecs.TestbedSpecs, hook)).split("\n\n")
        registration = re.sub(r"\s*The\s+contract:.*", "", spec[1], flags=re.S)  # the pointer to this very section
        base = hookspecs.BASES[kind]
        out += section(base, f"What a {kind} plugin builds. The hook `{hook}`; chosen in a scenario by {spec[0]} {registration}")
        for companion in COMPANIONS.get(kind, ()):
            out += section(companion, f"Given with the {kind} plugins (`{companion.__module__}`).")
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def render(page: str) -> str:
    """`page` with its generated parts replaced by what the code says now."""
    for name, content in (("kinds", kinds_table()), ("reference", reference())):
        begin, end = MARKERS[name]
        pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
        if len(pattern.findall(page)) != 1:
            raise SystemExit(f"{PAGE}: expected one {begin} ... {end} block")
        block = f"{begin}\n{content}\n{end}"
        page = pattern.sub(lambda _, block=block: block, page)
    return page


def main(argv: list[str]) -> int:
    page = PAGE.read_text()
    new = render(page)
    if "--check" in argv:
        if new != page:
            print(f"{PAGE} differs from the code's docstrings: run python docs/plugin_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
