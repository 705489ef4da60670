"""The options of `compare --until-decided` and of `power`, each written once: the command line,
the Python API and the implementation take the same frozen object, so a default or a check
cannot drift between them. Light on purpose (no numpy, no scipy): `testbed --help` reads it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from testbed.errors import UserError


@dataclass(frozen=True)
class UntilDecidedOptions:
    """How `compare --until-decided` decides B − A: on `metric` (a key of compare's metrics),
    equivalent within ±`margin` (in the metric's units), undecided after `max_seeds`, looking
    every `batch` seeds, with error rate `alpha`."""

    metric: str = "success"
    margin: float = 0.05
    max_seeds: int = 1000
    batch: int = 20
    alpha: float = 0.05

    def problems(self) -> list[str]:
        """Every out-of-range option, one line each, named by its flag."""
        found = []
        if not (math.isfinite(self.margin) and self.margin > 0):
            found.append(f"--margin: must be > 0, got {self.margin:g}")
        if self.batch < 2:
            found.append(f"--batch: must be at least 2 seeds, got {self.batch}")
        elif self.max_seeds < self.batch:
            found.append(f"--max-seeds: must be at least --batch ({self.batch}), got {self.max_seeds}")
        if not 0 < self.alpha < 1:
            found.append(f"--alpha: must be in (0, 1), got {self.alpha:g}")
        return found


@dataclass(frozen=True)
class PowerOptions:
    """What `power` plans for: the `pilot` seeds ('0-19' or a list), the difference `effect` to
    detect (None: the pilot's; one number for every metric in its own units, or per metric:
    'success=0.1' strings or {"success": 0.1}), the `power` wanted at two-sided `alpha`."""

    pilot: str | Sequence[int] = "0-19"
    effect: None | float | str | Sequence[str] | Mapping[str, float] = None
    power: float = 0.8
    alpha: float = 0.05

    def problems(self) -> list[str]:
        found = []
        if not 0 < self.power < 1:
            found.append(f"--power: must be in (0, 1), got {self.power:g}")
        if not 0 < self.alpha < 1:
            found.append(f"--alpha: must be in (0, 1), got {self.alpha:g}")
        return found


Options = TypeVar("Options", UntilDecidedOptions, PowerOptions)


def checked(options: Options) -> Options:
    """`options` when every field is in range, else a UserError with one line per problem."""
    found = options.problems()
    if found:
        raise UserError("\n".join(found))
    return options


def options_of(kind: type[Options], given: Options | None, fields_given: Mapping[str, Any], caller: str) -> Options:
    """The options of an API call: an options object, or its fields as keywords (not both)."""
    names = [f.name for f in fields(kind)]
    unknown = [name for name in fields_given if name not in names]
    if unknown:
        raise UserError(f"{caller}: unknown option {unknown[0]!r}; the options are {', '.join(names)}")
    if given is not None and fields_given:
        raise UserError(f"{caller}: give options= or its fields ({', '.join(fields_given)}), not both")
    return checked(given if given is not None else kind(**fields_given))
