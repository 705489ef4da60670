"""Study files: which base scenarios, which seeds, and which scenario fields vary (the axes),
YAML validated by pydantic like scenarios (its JSON schema: `testbed schema --study`).

    name: ablation_hidden
    scenarios: [../scenarios/baseline.yaml]     # relative to this file; several: a `scenario` axis
    seeds: 0-99
    set: {model.n_tokens: 3}                     # every cell
    axes:                                        # combined as a product
      model.hidden: [4, 8, 16, 32]
    zip:                                         # each group varies its fields together
      - {curriculum.switch_epoch: [100, 200], training.epochs: [300, 600]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from testbed.config.scenario import Seeds, Strict
from testbed.config.validation_errors import ScenarioError, format_errors


def _first_repeat(values: list[Any]) -> int | None:
    """The position of the first value equal (as canonical JSON) to an earlier one: one pass
    with a set, linear in the values (a 10,000-value axis once took 215 s pairwise)."""
    seen: set[str] = set()
    for i, value in enumerate(values):
        text = json.dumps(value, sort_keys=True)
        if text in seen:
            return i
        seen.add(text)
    return None


def _check_values(field: str, values: list[Any]) -> None:
    if not values:
        raise ValueError(f"axis {field} lists no values")
    i = _first_repeat(values)
    if i is not None:
        raise ValueError(f"axis {field} lists the value {json.dumps(values[i])} twice")


class StudyFile(Strict):
    """A study: base scenarios × axes (scenario fields and their values) on shared seeds."""

    name: str = Field("study", pattern=r"^[A-Za-z0-9_.-]+$", description="names the study's output folder")
    description: str = Field("", description="free text")
    scenarios: list[str] | dict[str, str] = Field(
        ..., min_length=1, description="base scenario files (relative to the study file), or a mapping label -> file"
    )
    seeds: Seeds | None = Field(None, description="like 0-99; default: the first scenario's")
    set: dict[str, Any] = Field(default_factory=dict, description="dotted scenario fields set in every cell, e.g. model.n_tokens: 3")
    axes: dict[str, list[Any]] = Field(default_factory=dict, description="dotted scenario field -> its values; axes combine as a product")
    zip: list[dict[str, list[Any]]] = Field(
        default_factory=list, description="groups of fields whose values pair up (same length), each group one factor of the product"
    )

    @field_validator("axes")
    @classmethod
    def _axes(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for field, values in axes.items():
            _check_values(field, values)
        return axes

    @field_validator("zip")
    @classmethod
    def _zip(cls, groups: list[dict[str, list[Any]]]) -> list[dict[str, list[Any]]]:
        for n, group in enumerate(groups):
            if not group:
                raise ValueError(f"group {n} names no field")
            lengths = {field: len(values) for field, values in group.items()}
            if len(set(lengths.values())) > 1:
                said = ", ".join(f"{f} has {k}" for f, k in lengths.items())
                raise ValueError(f"group {n}: zipped fields need as many values each ({said})")
            for field, values in group.items():
                _check_values(field, values)
            rows = [[values[i] for values in group.values()] for i in range(len(next(iter(group.values()))))]
            i = _first_repeat(rows)
            if i is not None:
                raise ValueError(f"group {n}: the values at position {i} repeat an earlier position")
        return groups

    @model_validator(mode="after")
    def _fields_once(self):
        seen: dict[str, str] = {}
        places = [(f, "set") for f in self.set] + [(f, "axes") for f in self.axes]
        places += [(f, f"zip group {n}") for n, group in enumerate(self.zip) for f in group]
        for field, where in places:
            if field == "seeds" or field.startswith("seeds."):
                raise ValueError(f"{where}: {field}: seeds are the study's `seeds`, not a field to vary")
            if field in seen:
                raise ValueError(f"{field} appears twice (in {seen[field]} and {where})")
            seen[field] = where
        return self

    def factors(self) -> list[list[dict[str, Any]]]:
        """The product's factors: each a list of {field: value} choices, axes first (in file
        order), then the zip groups."""
        out = [[{field: v} for v in values] for field, values in self.axes.items()]
        for group in self.zip:
            n = len(next(iter(group.values())))
            out.append([{field: values[i] for field, values in group.items()} for i in range(n)])
        return out

    def axis_names(self) -> list[str]:
        return [*self.axes, *(field for group in self.zip for field in group)]

    def scenario_files(self) -> dict[str, str]:
        """label -> file: a list gets each file's stem as its label (made unique with a counter)."""
        if isinstance(self.scenarios, dict):
            return dict(self.scenarios)
        labels: dict[str, str] = {}
        for path in self.scenarios:
            label, n = Path(path).stem, 1
            while label in labels:
                n += 1
                label = f"{Path(path).stem}#{n}"
            labels[label] = path
        return labels


def parse(data: dict, source: str) -> StudyFile:
    """A raw mapping -> StudyFile, or a ScenarioError naming the file and each field."""
    try:
        return StudyFile.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, format_errors(exc)) from None


def json_schema() -> dict:
    return StudyFile.model_json_schema()
