"""The scenario's schema: plain pydantic classes, one per section of a scenario file.

Plugin fields are typed by kind (`NormRef`, `OptimizerRef`, ...); `scenario_model(registry)`
binds them to the plugins of a registry, which validate their options, so every installed
plugin's options are part of validation and of `testbed schema`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from testbed.config.plugin_ref import ActivationRef, CurriculumRef, NormRef, OptimizerRef, ProbeRef, plugin_union
from testbed.config.seeds import Seeds
from testbed.plugin_api.registry import Registry, default_registry


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class TaskConfig(Strict):
    """Sparse modular addition: y = (x_1 + ... + x_k) mod p over sequences of L tokens."""

    seq_len: int = Field(default=12, ge=1, le=64, description="L, the number of tokens per sequence")
    sparsity: int = Field(default=5, ge=1, description="k, the number of leading tokens that are summed")
    p: int = Field(default=2, ge=2, le=64, description="vocabulary size and modulus")
    n_train: int = Field(default=2048, ge=1, description="training sequences, drawn uniformly with replacement")
    n_test: int = Field(default=2048, ge=1, description="test sequences")
    test_split: Literal["iid", "disjoint"] = Field(
        default="iid", description="iid: an independent sample (the papers); disjoint: only sequences absent from the training set"
    )


class TrainingConfig(Strict):
    epochs: int = Field(default=1000, ge=1, description="passes over the training set")
    batch_size: int | Literal["full"] = Field(default=32, description="sequences per step, or 'full' for full batch")
    device: str = Field(
        default="cpu",
        pattern=r"^(cpu|cuda(:\d+)?|mps|auto)$",
        description="where the training state lives: cpu, cuda (or cuda:N), mps, or auto (cuda, else mps, else cpu); "
        "each seed's data, initialisation and batch order are drawn on the CPU, so only the arithmetic moves",
    )

    compile: bool = Field(
        default=False,
        description="opt-in: the training step compiled by torch.compile (fused kernels; about 3x faster per step at one seed on "
        "a CPU, after a compile of tens of seconds). Not bit-identical to the default step (fused arithmetic rounds differently), "
        "and a seed's results may then depend on the seeds beside it",
    )

    engine: Literal["reference", "fused", "auto"] = Field(
        default="reference",
        description="reference: the step as torch operations over all seeds (testbed.engine.gradients); fused: each seed's whole step "
        "and evaluation in one numba-compiled kernel (pip install 'testbed[fused]'; CPU only; an error for a scenario it does not "
        "cover); auto: fused where it covers the scenario, else the reference engine with one line saying why",
    )

    def batch_for(self, n_train: int) -> int:
        return n_train if self.batch_size == "full" else self.batch_size


class WarmStart(Strict):
    """Initial weights from another run's snapshot (testbed.rundir.warm_start): a run
    directory, or a scenario whose run the store serves (trained once, on this run's seeds)."""

    run: str | None = Field(default=None, description="the source run directory (relative: to the scenario file; in --set, to the working directory)")
    scenario: str | None = Field(
        default=None,
        description="or the source's scenario file: its run on these seeds is served by the run store (trained if it lacks them), "
        "so that every run fine-tuned from it shares one pre-training; testbed then records the run directory in `run`",
    )
    epoch: int | None = Field(default=None, ge=0, description="the source's snapshot epoch to start from; default its last")
    keep_tokens: int | None = Field(
        default=None, ge=0, description="token embeddings taken from the source; the others are drawn afresh; default all the source has"
    )

    @model_validator(mode="after")
    def names_a_source(self) -> WarmStart:
        if self.run is None and self.scenario is None:
            raise ValueError("model.init needs a source: run (a run directory) or scenario (a scenario file)")
        return self


class OutputConfig(Strict):
    root: str = Field(default="runs", description="folder under which run directories are created")


class ModelConfig(Strict):
    """The one-layer transformer of the papers; norm sites and activation are plugins."""

    model_config = ConfigDict(defer_build=True)  # its plugin fields need the registry, read when first validated

    d: int = Field(default=2, ge=1, le=64, description="embedding dimension")
    hidden: int = Field(default=32, ge=1, le=4096, description="MLP hidden width h")
    # bounded like the other sizes: 1e11 passed validation, then the run tried to allocate 800 GB
    n_tokens: int | None = Field(default=None, ge=2, le=4096, description="token embeddings (>= every p used, <= 4096); default: the largest p")
    norm: NormRef = Field(default="rms", description="norm at both sites unless overridden below")  # type: ignore[assignment]  # validated into a NormRef
    embedding_norm: NormRef | None = Field(default=None, description="norm of E(x_t)+P(t) before attention")
    mlp_norm: NormRef | None = Field(default=None, description="pre-norm of the attention output before the MLP")
    activation: ActivationRef = Field(default="gelu", description="MLP activation")  # type: ignore[assignment]  # validated into an ActivationRef
    mlp_bias: bool = Field(default=True, description="false: no MLP biases (fc1 and fc2 as Linear(bias=False)); they stay exactly 0 and get no gradient")
    init: Literal["default", "ideal"] | WarmStart = Field(
        default="default",
        description="default: PyTorch's initialisation per seed; ideal: the first paper's hand-set circuit (section 3.1); "
        "{run: DIR, epoch: N, keep_tokens: K}: each seed's weights from that run's snapshot (a warm start)",
    )


class Scenario(Strict):
    """A testbed scenario: what to train, how, on which seeds, observed by which probes."""

    model_config = ConfigDict(defer_build=True)

    name: str = Field(default="scenario", pattern=r"^[A-Za-z0-9_.-]+$", description="used to name run directories")
    description: str = Field(default="", description="free text")
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=lambda: ModelConfig())  # a call: the checker reads a plugin field's default (its name) as not a reference
    optimizer: OptimizerRef = Field(default="adam")  # type: ignore[assignment]  # validated into an OptimizerRef
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    curriculum: CurriculumRef = Field(default="constant")  # type: ignore[assignment]  # validated into a CurriculumRef
    probes: list[ProbeRef] = Field(default=["metrics", "step_loss", "spikes"], description="observers of the run")  # type: ignore[assignment]
    seeds: Seeds = Field(default="0-9", description="like 0-99, 0,3,7 or a list")  # type: ignore[assignment]  # parsed into a list
    output: OutputConfig = Field(default_factory=OutputConfig)


def _bound(cls: type[Strict], **types: Any) -> Any:
    """A subclass of `cls` whose fields named in `types` take those types, each keeping its
    default and description; a section of a bound class's type is made by that class."""
    fields = {}
    for name, kind in types.items():
        field = cls.model_fields[name]
        fields[name] = (kind, Field(default_factory=kind) if field.default_factory is not None else field)
    return create_model(cls.__name__, __base__=cls, __doc__=cls.__doc__, __module__=cls.__module__, **fields)


@lru_cache(maxsize=4)
def scenario_model(registry: Registry | None = None) -> type[Scenario]:
    """`Scenario` with its plugin fields validated by the plugins in `registry` (default: the installed ones)."""
    registry = registry or default_registry()
    norm, activation = plugin_union("norm", registry), plugin_union("activation", registry)
    model = _bound(ModelConfig, norm=norm, embedding_norm=norm | None, mlp_norm=norm | None, activation=activation)
    return _bound(
        Scenario,
        model=model,
        optimizer=plugin_union("optimizer", registry),
        curriculum=plugin_union("curriculum", registry),
        probes=list[plugin_union("probe", registry)],  # type: ignore[misc]  # a union made at run time
    )


def json_schema(registry: Registry | None = None) -> dict[str, Any]:
    """The JSON schema of a scenario file, with every installed plugin's options."""
    return scenario_model(registry).model_json_schema()
