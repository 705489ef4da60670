"""Random scenario files and `--set` flags through `testbed validate` and `testbed run`: every
one is either accepted (exit 0) or refused with exit status 2 and `error:` lines only, one per
problem, each naming the file (and the field) or the flag; never a traceback or another exit
status, and nothing written for a refused one.

The scenarios are drawn from the real schema (`scenario_model()`, built from the installed
plugins), so every field and every plugin's parameters are covered, with wrong types, missing
and extra keys, out-of-range numbers, unknown plugin names, nested garbage and YAML scalars of
every kind (dates, binary, sets, nulls, infinities) at every level.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import tempfile
import types
import typing
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import TINY, cli_here
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from testbed.config.scenario import scenario_model
from testbed.plugin_api.registry import default_registry

FUZZ = settings(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- values ------------------------------------------------------------------------------------

INTS = st.one_of(st.integers(-3, 70), st.sampled_from([0, 1, 2, 64, 65, 4096, 4097, 2**31, 2**63, 10**20, -(2**63)]))
FLOATS = st.one_of(st.floats(-2, 2), st.sampled_from([0.0, 1e-3, 0.9, 1.0, math.nan, math.inf, -math.inf, 1e308, 5e-324]))
TEXT = st.one_of(st.text(max_size=8), st.sampled_from(["", " ", "full", "yes", "~", "null", "0x1F", "1e3", ".inf", "a\nb", "{", "- x", "*a"]))
# Every scalar YAML can hold (safe_dump writes dates, bytes as !!binary, sets as !!set).
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT, st.dates(), st.datetimes(), st.binary(max_size=4))
KEYS = st.one_of(TEXT, st.integers(-2, 3), st.booleans(), st.none(), st.floats(allow_nan=False))
GARBAGE = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3), st.sets(st.integers(0, 3), max_size=2)),
    max_leaves=6,
)
UNKNOWN_NAMES = ["", "RMS", "rms ", "adam\n", "no_such_plugin", "sfot_rms"]
SEED_TEXT = st.one_of(
    st.from_regex(r"\s?\d{1,3}(-\d{1,3})?(,\s?\d{1,3}(-\d{1,3})?){0,2}\s?", fullmatch=True),
    st.sampled_from(["5-3", "", "0-", "-1", "0--3", "0,", "1e3", "0-99999999999", "0-3,2-9999999999999", "٣", "²"]),
)


def _field_value(annotation, name: str = "", wild: bool = True) -> st.SearchStrategy:
    """A field's value: of its type (in range or not), or when `wild`, as often anything at all."""
    plausible = _plausible(annotation, name, wild)
    return st.one_of(plausible, GARBAGE) if wild else plausible


def _plausible(annotation, name: str = "", wild: bool = True) -> st.SearchStrategy:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if name == "seeds":
        return st.one_of(SEED_TEXT, st.lists(INTS, max_size=4), INTS)
    if origin is typing.Annotated:
        return _plausible(args[0], name, wild)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_plausible(a, name, wild) for a in args))
    if origin is list:
        return st.lists(_field_value(args[0], wild=wild), max_size=3)
    if origin is tuple:
        return st.lists(st.one_of(*(_plausible(a, wild=wild) for a in args)), min_size=0 if wild else len(args), max_size=len(args) + wild)
    if origin is dict:
        modules = st.sampled_from(["mlp", "attn", "tok_emb", "mlp.w1", "nope"])
        return st.dictionaries(st.one_of(modules, KEYS) if wild else modules, _field_value(args[1], wild=wild), max_size=2)
    if annotation is type(None):
        return st.none()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _mapping(annotation, wild)
    if not wild:  # mostly in range, so that the checks across fields get their turn
        return {bool: st.booleans(), int: st.one_of(st.integers(1, 12), st.integers(1, 12), INTS),
                float: st.one_of(st.floats(1e-3, 1), st.floats(1e-3, 1), FLOATS), str: TEXT}.get(annotation, GARBAGE)
    return {bool: st.booleans(), int: INTS, float: FLOATS, str: TEXT}.get(annotation, GARBAGE)


def _mapping(model: type[BaseModel], wild: bool = True) -> st.SearchStrategy:
    """A mapping for `model`: any subset of its fields, when `wild` also unknown keys; a
    plugin's model (with a `name` literal) also as its bare name, or under an unknown name."""
    fields = {name: _field_value(f.annotation, name, wild) for name, f in model.model_fields.items()}
    if "name" in model.model_fields and typing.get_origin(model.model_fields["name"].annotation) is typing.Literal:
        (plugin_name,) = typing.get_args(model.model_fields["name"].annotation)
        names = st.sampled_from([plugin_name, plugin_name, *UNKNOWN_NAMES]) if wild else st.just(plugin_name)
        fields["name"] = st.one_of(names, GARBAGE) if wild else names
        as_mapping = st.builds(lambda named, rest: {**rest, **named}, st.fixed_dictionaries({"name": names}), _subset(fields, wild))
        return st.one_of(names, as_mapping, _subset(fields, wild)) if wild else st.one_of(names, as_mapping)
    return _subset(fields, wild)


def _subset(fields: dict[str, st.SearchStrategy], wild: bool = True) -> st.SearchStrategy:
    extras = st.one_of(st.just({}), st.dictionaries(KEYS, GARBAGE, max_size=2)) if wild else st.just({})
    return st.builds(lambda known, extra: {**extra, **known}, st.fixed_dictionaries({}, optional=fields), extras)


SCENARIOS = _mapping(scenario_model())
WELL_TYPED = _mapping(scenario_model(), wild=False)
FIELD_PATHS = [
    "name", "task.seq_len", "task.p", "task.n_train", "training.epochs", "training.batch_size", "model.norm", "model.norm.eps",
    "model.norm.radius", "model.activation", "optimizer", "optimizer.lr", "optimizer.lr_multipliers.mlp", "optimizer.betas.1",
    "curriculum.switches.0.p", "probes", "probes.0", "probes.0.every", "probes.7", "seeds", "seeds.0", "output.root",
]
SET_VALUES = st.one_of(TEXT, GARBAGE.map(lambda v: yaml.safe_dump(v, default_flow_style=True, width=1000).removesuffix("\n...\n").strip()))
KEY_PARTS = st.one_of(st.sampled_from(["model", "norm", "probes", "seeds", "optimizer", "0", "1", "-1", "", " ", "²", "٣", "name"]), TEXT)
SET_KEYS = st.one_of(st.sampled_from(FIELD_PATHS), st.lists(KEY_PARTS, min_size=1, max_size=4).map(".".join))
SET_FLAGS = st.lists(
    st.one_of(
        st.builds(lambda key, value: f"{key}={value}", SET_KEYS, SET_VALUES),
        TEXT,  # no '=' at all, or a bare '='
    ),
    max_size=2,
)

# Files YAML parsers trip on: deep nesting, aliases (recursive too), tags, several documents,
# tabs, a byte-order mark, bytes that are not UTF-8.
ODD_FILES = [
    "[" * 1100 + "]" * 1100,
    "model: " + "{a: " * 1100 + "1" + "}" * 1100,
    "a: &x [*x]\n",
    "task: &t {p: 3}\nmodel: {norm: *t}\n",
    "probes: &p [metrics, *p]\n",
    "name: !!python/object:os.system x\n",
    "name: !custom x\n",
    "name: a\n---\nname: b\n",
    "name: a\n\tseeds: 1\n",
    "\ufeffname: bom\n",
    "%YAML 1.1\n---\nname: directive\n",
    "? [1, 2]\n: 3\n",
    b"name: \xff\xfe\n",
    b"\x00\x00",
]


@st.composite
def documents(draw) -> str | bytes:
    """A scenario file's text (a composite, so that hypothesis reports examples, not strategies)."""
    return draw(
        st.one_of(
            SCENARIOS.map(lambda data: yaml.safe_dump(data, sort_keys=False)),
            WELL_TYPED.map(lambda data: yaml.safe_dump(data, sort_keys=False)),  # for the checks across fields
            GARBAGE.map(yaml.safe_dump),  # not a mapping at the top
            TEXT,  # not YAML, or empty
            st.sampled_from(ODD_FILES),
        )
    )


@st.composite
def set_flags(draw) -> list[str]:
    return draw(SET_FLAGS)


# -- the checks --------------------------------------------------------------------------------


@contextlib.contextmanager
def working_directory():
    with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder):
        yield Path(folder)


def assert_accepted_or_refused(proc, file: str) -> None:
    """Exit 0, or exit 2 with one `error:` line per problem naming the file or the flag."""
    assert proc.returncode in (0, 2), f"exit {proc.returncode}\n{proc.stderr}"
    if proc.returncode == 0:
        return
    lines = proc.stderr.splitlines()
    assert lines, "refused without a word"
    for line in lines:
        assert line.startswith((f"error: {file}: ", "error: --set ", "error: --seeds: ")), proc.stderr
    assert len(set(lines)) == len(lines), f"a problem said twice:\n{proc.stderr}"


@settings(FUZZ, max_examples=200)
@given(document=documents(), flags=set_flags())
def _validate_one(document: str | bytes, flags: list[str], outcomes: Counter) -> None:
    with working_directory() as here:
        Path("scenario.yaml").write_bytes(document if isinstance(document, bytes) else document.encode())
        proc = cli_here("validate", "scenario.yaml", *(f"--set={flag}" for flag in flags))
        assert_accepted_or_refused(proc, "scenario.yaml")
        assert sorted(os.listdir(here)) == ["scenario.yaml"], "validate writes nothing"
        outcomes[proc.returncode] += 1


def test_random_scenarios_validate_or_are_refused_in_one_line_each():
    outcomes: Counter = Counter()
    _validate_one(outcomes=outcomes)
    assert outcomes[0] >= 5 and outcomes[2] >= 100, outcomes  # both kinds of outcome were tried


# Runs: TINY with a few fields replaced by random ones, kept cheap by flags appended last (so a
# valid one trains in a fraction of a second); the tracking probes (which log into other
# programs' stores) stay out.
RUN_FIELDS = {
    name: st.one_of(_field_value(f.annotation, name, wild=False), _field_value(f.annotation, name))  # mostly well-typed
    for name, f in scenario_model().model_fields.items()
}
SAFE_PROBES = st.lists(st.sampled_from(["metrics", "step_loss", "spikes", "grad_norms", {"name": "snapshots", "every": 1}]), max_size=4)
CHEAP = ["--set=training.epochs=2", "--set=task.n_train=24", "--set=task.n_test=16", "-q"]
SEEDS_FLAGS = st.one_of(st.sampled_from(["0-1", "3", "1,0"]), st.sampled_from(["5-3", "", "x", "0-99999999999", "-1", "٣", "99999999999999999999"]))


@st.composite
def tiny_runs(draw) -> dict:
    data = copy.deepcopy(TINY)
    for key in draw(st.lists(st.sampled_from(sorted(set(RUN_FIELDS) - {"probes", "output"})), max_size=2, unique=True)):
        value = draw(RUN_FIELDS[key])
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            value = {**data[key], **value}
        data[key] = value
    data["probes"] = draw(st.one_of(st.just(TINY["probes"]), SAFE_PROBES))
    return data


@settings(FUZZ, max_examples=30)
@given(data=tiny_runs(), flags=st.one_of(st.just([]), set_flags()), seeds=SEEDS_FLAGS)
def _run_one(data: dict, flags: list[str], seeds: str, outcomes: Counter) -> None:
    with working_directory() as here:
        Path("scenario.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        proc = cli_here("run", "scenario.yaml", "--out", "runs/fuzz", *(f"--set={flag}" for flag in flags), *CHEAP, f"--seeds={seeds}")
        assert_accepted_or_refused(proc, "scenario.yaml")
        if proc.returncode == 0:
            assert os.listdir(here / "runs") == ["fuzz"] and (here / "runs/fuzz/summary.json").is_file()
        else:
            assert sorted(os.listdir(here)) == ["scenario.yaml"], "nothing written for a refused scenario"
        outcomes[proc.returncode] += 1


def test_random_tiny_runs_train_or_are_refused_in_one_line_each():
    outcomes: Counter = Counter()
    _run_one(outcomes=outcomes)
    assert outcomes[0] >= 3 and outcomes[2] >= 3, outcomes


# What the fuzzer found, each once a traceback, a split line or a run that could not start.
BIG = 10**20
NORMS = ", ".join(default_registry().names("norm"))
FOUND = [
    ("{}\n", ["\r"], r"error: --set \r: expected KEY=VALUE, like training.epochs=50"),
    ('"a\\nb": 1\n', [], r"error: scenario.yaml: a\nb: unknown key"),
    ("model: {norm: \"sfot\\nrms\"}\n", [], rf"error: scenario.yaml: model.norm: unknown norm 'sfot\nrms': did you mean 'rms'? known: {NORMS}"),
    ("model:\n  norm:\n    name: []\n", [], f"error: scenario.yaml: model.norm: norm name must be a string, one of: {NORMS}"),
    ("{}\n", ["².x=1"], "error: scenario.yaml: ²: unknown key"),
    ("probes: [metrics]\n", ["probes.²=1"], "error: --set probes.²=1: ² is not an index of that list"),
    ("seeds: 0-99999999999\n", [], "error: scenario.yaml: seeds: 0-99999999999 is 100000000000 seeds; at most 1000000 train in one run"),
    ("[" * 1100 + "]" * 1100, [], "error: scenario.yaml: invalid YAML: nested too deeply"),
    (f"seeds: [3, {BIG}]\n", [], f"error: scenario.yaml: seeds: must be <= {2**63 - 1} (a 64-bit integer)"),
    (f"probes: [{{name: spikes, window: {BIG}}}]\n", [], f"error: scenario.yaml: probes.0.window: must be <= {2**63 - 1} (a 64-bit integer)"),
    ("model: {n_tokens: 100000000000}\n", [], "error: scenario.yaml: model.n_tokens: must be <= 4096"),
]


@pytest.mark.parametrize("document, flags, expected", FOUND)
def test_what_the_fuzzer_found_is_refused_in_one_line(document, flags, expected):
    with working_directory():
        Path("scenario.yaml").write_text(document)
        proc = cli_here("validate", "scenario.yaml", *(f"--set={flag}" for flag in flags))
    assert (proc.returncode, proc.stderr.splitlines()) == (2, [expected])
