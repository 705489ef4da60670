"""Scenario files: YAML validated by pydantic v2, with plugin parameters validated by each plugin.

The pydantic model is built from the registry, so every installed plugin's parameter model is
part of the schema (`testbed schema`) and of validation; each plugin reference is either a
name (`norm: rms`) or a mapping with a `name` and that plugin's parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, ValidationError, create_model, model_validator

from testbed.config.overrides import apply_overrides
from testbed.config.validation_errors import ScenarioError, format_errors
from testbed.errors import UserError
from testbed.plugin_api.registry import Registry, default_registry


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class TaskConfig(Strict):
    """Sparse modular addition: y = (x_1 + ... + x_k) mod p over sequences of L tokens."""

    seq_len: int = Field(12, ge=1, le=64, description="L, the number of tokens per sequence")
    sparsity: int = Field(5, ge=1, description="k, the number of leading tokens that are summed")
    p: int = Field(2, ge=2, le=64, description="vocabulary size and modulus")
    n_train: int = Field(2048, ge=1, description="training sequences, drawn uniformly with replacement")
    n_test: int = Field(2048, ge=1, description="test sequences")
    test_split: Literal["iid", "disjoint"] = Field(
        "iid", description="iid: an independent sample (the papers); disjoint: only sequences absent from the training set"
    )


class TrainingConfig(Strict):
    epochs: int = Field(1000, ge=1, description="passes over the training set")
    batch_size: int | Literal["full"] = Field(32, description="sequences per step, or 'full' for full batch")
    device: str = Field(
        "cpu",
        pattern=r"^(cpu|cuda(:\d+)?|mps|auto)$",
        description="where the training state lives: cpu, cuda (or cuda:N), mps, or auto (cuda, else mps, else cpu); "
        "each seed's data, initialisation and batch order are drawn on the CPU, so only the arithmetic moves",
    )

    compile: bool = Field(
        False,
        description="opt-in: the training step compiled by torch.compile (fused kernels; about 3x faster per step at one seed on "
        "a CPU, after a compile of tens of seconds). Not bit-identical to the default step (fused arithmetic rounds differently), "
        "and a seed's results may then depend on the seeds beside it",
    )

    engine: Literal["reference", "fused", "auto"] = Field(
        "reference",
        description="reference: the step as torch operations over all seeds (testbed.engine.gradients); fused: each seed's whole step "
        "and evaluation in one numba-compiled kernel (pip install 'testbed[fused]'; CPU only; an error for a scenario it does not "
        "cover); auto: fused where it covers the scenario, else the reference engine with one line saying why",
    )

    def batch_for(self, n_train: int) -> int:
        return n_train if self.batch_size == "full" else self.batch_size


class WarmStart(Strict):
    """Initial weights from another run's snapshot (testbed.rundir.warm_start): a run
    directory, or a scenario whose run the store serves (trained once, on this run's seeds)."""

    run: str | None = Field(None, description="the source run directory (relative: to the scenario file; in --set, to the working directory)")
    scenario: str | None = Field(
        None,
        description="or the source's scenario file: its run on these seeds is served by the run store (trained if it lacks them), "
        "so that every run fine-tuned from it shares one pre-training; testbed then records the run directory in `run`",
    )
    epoch: int | None = Field(None, ge=0, description="the source's snapshot epoch to start from; default its last")
    keep_tokens: int | None = Field(
        None, ge=0, description="token embeddings taken from the source; the others are drawn afresh; default all the source has"
    )

    @model_validator(mode="after")
    def names_a_source(self) -> WarmStart:
        if self.run is None and self.scenario is None:
            raise ValueError("model.init needs a source: run (a run directory) or scenario (a scenario file)")
        return self


class OutputConfig(Strict):
    root: str = Field("runs", description="folder under which run directories are created")


MAX_SEEDS = 1_000_000
SEED_SPEC = re.compile(r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$")


def parse_seeds(spec: Any) -> list[int]:
    """'0-99', '0,3,7', '0-4,10', 7 or [0, 3, 7] -> sorted unique list of seeds."""
    if isinstance(spec, bool):
        raise ValueError("seeds must be like 0-99, 0,3,7 or a list of integers")
    if isinstance(spec, int):
        spec = str(spec)
    if isinstance(spec, (list, tuple)):
        if not spec or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in spec):
            raise ValueError("seeds must be a non-empty list of integers >= 0")
        return sorted(set(spec))
    if not isinstance(spec, str) or not SEED_SPEC.match(spec):
        raise ValueError(f"seeds must be like 0-99, 0,3,7 or a list of integers, not {spec!r}")
    ranges = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        lo_i, hi_i = int(lo), int(hi) if hi.strip() else int(lo)
        if hi_i < lo_i:
            raise ValueError(f"seed range {' '.join(part.split())} is empty")
        ranges.append((lo_i, hi_i))
    count = _count_seeds(ranges)
    if count > MAX_SEEDS:  # counted before listing them: '0-99999999999' would fill the memory
        raise ValueError(f"{' '.join(spec.split())} is {count} seeds; at most {MAX_SEEDS} train in one run")
    seeds: set[int] = set()
    for lo_i, hi_i in ranges:
        seeds.update(range(lo_i, hi_i + 1))
    return sorted(seeds)


def _count_seeds(ranges: list[tuple[int, int]]) -> int:
    """The number of distinct seeds in inclusive ranges that may overlap."""
    count, covered = 0, -1
    for lo, hi in sorted(ranges):
        lo = max(lo, covered + 1)
        if hi >= lo:
            count += hi - lo + 1
            covered = hi
    return count


def format_seeds(seeds: list[int]) -> str:
    """The compact inverse of `parse_seeds`: [0, 1, 2, 5] -> '0-2,5'."""
    parts, start = [], None
    for i, s in enumerate(seeds):
        if start is None:
            start = s
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            parts.append(str(start) if start == s else f"{start}-{s}")
            start = None
    return ",".join(parts)


Seeds = Annotated[list[int], BeforeValidator(parse_seeds)]


def _plugin_ref(kind: str, registry: Registry):
    """The annotated type of a plugin reference of `kind`: a discriminated union over its plugins."""
    models = {}
    for name in registry.names(kind):
        p = registry.get(kind, name)
        models[name] = create_model(
            f"{kind.title()}_{name}",
            __base__=p.params,
            __doc__=p.doc or None,
            name=(Literal[name], Field(description=f"{kind} plugin '{name}'")),
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
    union = Annotated[Union[members], Discriminator("name")] if len(members) > 1 else members[0]  # noqa: UP007 (a union built at run time)
    return Annotated[union, BeforeValidator(coerce)]


@lru_cache(maxsize=4)
def scenario_model(registry: Registry | None = None) -> type[BaseModel]:
    """Build the pydantic Scenario model for the plugins in `registry`."""
    registry = registry or default_registry()
    norm = _plugin_ref("norm", registry)
    activation = _plugin_ref("activation", registry)
    optimizer = _plugin_ref("optimizer", registry)
    curriculum = _plugin_ref("curriculum", registry)
    probe = _plugin_ref("probe", registry)

    model_cfg = create_model(
        "ModelConfig",
        __base__=Strict,
        __doc__="The one-layer transformer of the papers; norm sites and activation are plugins.",
        d=(int, Field(2, ge=1, le=64, description="embedding dimension")),
        hidden=(int, Field(32, ge=1, le=4096, description="MLP hidden width h")),
        n_tokens=(
            int | None,
            # bounded like the other sizes: 1e11 passed validation, then the run tried to allocate 800 GB
            Field(None, ge=2, le=4096, description="token embeddings (>= every p used, <= 4096); default: the largest p"),
        ),
        norm=(norm, Field("rms", description="norm at both sites unless overridden below")),
        embedding_norm=(norm | None, Field(None, description="norm of E(x_t)+P(t) before attention")),
        mlp_norm=(norm | None, Field(None, description="pre-norm of the attention output before the MLP")),
        activation=(activation, Field("gelu", description="MLP activation")),
        mlp_bias=(
            bool,
            Field(True, description="false: no MLP biases (fc1 and fc2 as Linear(bias=False)); they stay exactly 0 and get no gradient"),
        ),
        init=(
            Literal["default", "ideal"] | WarmStart,
            Field(
                "default",
                description="default: PyTorch's initialisation per seed; ideal: the first paper's hand-set circuit (section 3.1); "
                "{run: DIR, epoch: N, keep_tokens: K}: each seed's weights from that run's snapshot (a warm start)",
            ),
        ),
    )
    return create_model(
        "Scenario",
        __base__=Strict,
        __doc__="A testbed scenario: what to train, how, on which seeds, observed by which probes.",
        name=(str, Field("scenario", pattern=r"^[A-Za-z0-9_.-]+$", description="used to name run directories")),
        description=(str, Field("", description="free text")),
        task=(TaskConfig, Field(default_factory=TaskConfig)),
        model=(model_cfg, Field(default_factory=model_cfg)),
        optimizer=(optimizer, Field("adam")),
        training=(TrainingConfig, Field(default_factory=TrainingConfig)),
        curriculum=(curriculum, Field("constant")),
        probes=(list[probe], Field(["metrics", "step_loss", "spikes"], description="observers of the run")),
        seeds=(Seeds, Field("0-9", description="like 0-99, 0,3,7 or a list")),
        output=(OutputConfig, Field(default_factory=OutputConfig)),
    )


def read_yaml(path: Path) -> dict:
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


def validate(data: dict, source: str = "scenario", registry: Registry | None = None):
    """Validate a raw mapping into a Scenario, raising ScenarioError with every problem."""
    model = scenario_model(registry)
    try:
        scenario = model.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, format_errors(exc)) from None
    problems = check(scenario, registry or default_registry())
    if problems:
        raise ScenarioError(source, problems)
    return scenario


def revised(scenario, **fields: Any):
    """A copy of a validated scenario with some top-level fields replaced, validated again:
    scenarios are frozen, and a changed one must pass the same checks as a file."""
    data = scenario.model_dump(mode="json")
    data.update(fields)
    return validate(data, scenario.name)


def load(
    path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = (), seeds: Any = None, registry: Registry | None = None
):
    """Read, override (`--set` strings, or dotted keys to values) and validate a scenario file;
    `seeds` ('0-99', '0,3,7' or a list) replaces the file's."""
    path = Path(path)
    data = anchored(read_yaml(path), path.parent)  # a source run named in the file: relative to the file
    data = anchored(apply_overrides(data, overrides), Path.cwd())  # named by --set: relative to where the user is
    if seeds is not None:
        try:
            data["seeds"] = parse_seeds(seeds)
        except ValueError as exc:
            raise UserError(f"--seeds: {exc}") from None
    return validate(data, str(path), registry)


def anchored(data: Any, base: Path) -> Any:
    """`model.init.run` made absolute against `base` when relative (the folder of the file
    that named it, or the working directory for --set), so that the resolved scenario names
    the source run wherever it is read from."""
    model = data.get("model") if isinstance(data, dict) else None
    init = model.get("init") if isinstance(model, dict) else None
    for field in ("run", "scenario"):
        if isinstance(init, dict) and isinstance(init.get(field), str) and init[field] and not Path(init[field]).is_absolute():
            init[field] = str((base / init[field]).resolve())
    return data


def _warm_start_problems(scenario, n_tokens: int) -> list[tuple[str, str]]:
    """Whether the source run of `model.init: {run: ...}` can start this model on these seeds."""
    from testbed.engine.model import Architecture
    from testbed.rundir.warm_start import Source

    init = scenario.model.init

    def shapes(sc, tokens: int) -> dict[str, tuple[int, ...]]:
        m = sc.model
        return Architecture(m.d, m.hidden, tokens, sc.task.seq_len, None, None, None, m.mlp_bias).shapes()

    try:
        source = Source.read(init.run) if init.run is not None else _scenario_source(init.scenario, list(scenario.seeds), shapes)
    except UserError as exc:
        field, _, message = str(exc).partition(": ")
        return [(field, message)]
    return source.problems(shapes(scenario, n_tokens), list(scenario.seeds), init.epoch, init.keep_tokens)


_SOURCES_BEING_CHECKED: list[str] = []  # the chain of source scenarios being validated, to refuse a cycle


def _scenario_source(path: str, seeds: list[int], shapes):
    """What the run of a source scenario will hold (parameter shapes, snapshot epochs), known
    before it is trained."""
    from testbed.rundir.warm_start import Source

    if path in _SOURCES_BEING_CHECKED:
        raise UserError(f"model.init.scenario: {path} starts from itself (through its own model.init)")
    _SOURCES_BEING_CHECKED.append(path)
    try:
        source = load(path, seeds=seeds)
    except ScenarioError as exc:
        raise UserError(f"model.init.scenario: {exc.problems[0][0]}: {exc.problems[0][1]} (in {path})") from None
    except UserError as exc:
        raise UserError(f"model.init.scenario: {exc}") from None
    finally:
        _SOURCES_BEING_CHECKED.pop()
    snapshots = next((p for p in source.probes if p.name == "snapshots"), None)
    if snapshots is None:
        raise UserError(f"model.init.scenario: {path} has no snapshots probe, so its runs keep no weights to start from")
    epochs = source.training.epochs
    kept = [e for e in range(epochs + 1) if snapshots.keeps(e, epochs)]  # the probe's own rule
    tokens = source.model.n_tokens or max(build_curriculum(source).vocab_sizes())
    return Source(Path(path), shapes(source, tokens), kept, seeds)


def check(scenario, registry: Registry) -> list[tuple[str, str]]:
    """Checks across fields that no single field's validator can see."""
    from testbed.engine.model import PARAM_GROUPS  # model imports nothing of this module

    problems: list[tuple[str, str]] = []
    task, model = scenario.task, scenario.model
    if task.sparsity > task.seq_len:
        problems.append(("task.sparsity", f"must be <= task.seq_len ({task.seq_len})"))
    curriculum = build_curriculum(scenario, registry)
    vocab = curriculum.vocab_sizes()
    for before, after in zip(vocab, vocab[1:]):
        if before == after:  # e.g. `--set task.p=4` on a p = 2 -> 4 curriculum: silently no curriculum at all
            problems.append(("curriculum", f"switches from p = {before} to p = {after}: a switch must change p (task.p is the first stage's p)"))
            break
    if model.n_tokens is not None and model.n_tokens < max(vocab):
        problems.append(("model.n_tokens", f"must be >= {max(vocab)}, the largest p the task and curriculum use"))
    bs = scenario.training.batch_size
    if bs != "full" and not 1 <= bs <= task.n_train:
        problems.append(("training.batch_size", f"must be between 1 and task.n_train ({task.n_train}), or 'full'"))
    if task.test_split == "disjoint":
        for p in vocab:
            if p**task.seq_len <= task.n_train:
                problems.append(
                    ("task.test_split", f"disjoint needs more than n_train={task.n_train} possible sequences; p={p}, L={task.seq_len} has {p ** task.seq_len}")
                )
                break
    for key in getattr(scenario.optimizer, "lr_multipliers", {}) or {}:
        if not any(key == g or g.startswith(key + ".") for g in PARAM_GROUPS):
            problems.append((f"optimizer.lr_multipliers.{key}", f"unknown module; use a parameter or a prefix of one (e.g. mlp): {', '.join(PARAM_GROUPS)}"))
    if model.init == "ideal" and not model.mlp_bias:
        problems.append(("model.mlp_bias", "must be true with model.init: ideal, whose circuit sets the MLP biases"))
    if model.init == "ideal":
        from math import comb

        patterns = comb(task.sparsity + curriculum.p_at(1) - 1, task.sparsity)
        if model.d != 2:
            problems.append(("model.init", "ideal is built for model.d = 2"))
        if model.hidden < patterns - 1:
            problems.append(("model.init", f"ideal needs model.hidden >= {patterns - 1} (one neuron per gap between the {patterns} prefix count patterns)"))
    if isinstance(model.init, WarmStart):
        problems.extend(_warm_start_problems(scenario, model.n_tokens or max(vocab)))
    if scenario.training.engine == "fused":
        from testbed.engine.fused.validation import scenario_gap

        gap = scenario_gap(scenario, registry)
        if gap is not None:
            problems.append(("training.engine", f"fused does not cover {gap}; use auto (falls back to the reference engine) or reference"))
    names = [p.name for p in scenario.probes]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(("probes", f"probe '{dup}' is listed twice"))
    problems.extend(dict.fromkeys(_beyond_64_bits(scenario.model_dump())))
    return problems


INT64 = (-(2**63), 2**63 - 1)


def _beyond_64_bits(node: Any, path: tuple = ()) -> Iterator[tuple[str, str]]:
    """Every integer (a seed, a plugin's parameter) that numpy and torch cannot hold: beyond 64
    bits the run would stop deep inside with an OverflowError, whatever the field's own bounds."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _beyond_64_bits(value, (*path, key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _beyond_64_bits(value, (*path, i))
    elif isinstance(node, int) and not isinstance(node, bool) and not INT64[0] <= node <= INT64[1]:
        where = "seeds" if path[0] == "seeds" else ".".join(str(p) for p in path)
        yield where, f"must be <= {INT64[1]} (a 64-bit integer)" if node > 0 else f"must be >= {INT64[0]} (a 64-bit integer)"


def build_curriculum(scenario, registry: Registry | None = None):
    registry = registry or default_registry()
    ref = scenario.curriculum
    return registry.get("curriculum", ref.name).build(ref, scenario.task)


def curriculum_switches(scenario) -> list[tuple[int, int, int]]:
    """(epoch, p before, p after) for each epoch whose p differs from the epoch before's, asked
    of the scenario's curriculum plugin (its `p_at`), so any curriculum is read the same way."""
    curriculum = build_curriculum(scenario)
    switches, before = [], curriculum.p_at(1)
    for epoch in range(2, scenario.training.epochs + 1):
        p = curriculum.p_at(epoch)
        if p != before:
            switches.append((epoch, before, p))
            before = p
    return switches


def _name_first(node: Any) -> Any:
    if isinstance(node, dict):
        items = [(k, _name_first(v)) for k, v in node.items()]
        return dict(sorted(items, key=lambda kv: kv[0] != "name"))
    if isinstance(node, list):
        return [_name_first(v) for v in node]
    return node


def to_yaml(scenario) -> str:
    """The fully resolved scenario (every default written out), loadable again as a scenario."""
    data = _name_first(scenario.model_dump(mode="json"))
    data["seeds"] = format_seeds(data["seeds"])
    return yaml.safe_dump(data, sort_keys=False)


def json_schema(registry: Registry | None = None) -> dict:
    return scenario_model(registry).model_json_schema()
