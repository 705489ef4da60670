"""The default checkpoint state of a plugin object (an update rule, a probe): the attributes that
hold data, so that a plugin keeping its state in tensors, numbers, strings, lists and dicts
resumes correctly without writing a line.

What is data: tensors, None, bool, int, float, str, the record types the caller names (for
probes, `Evaluation`), and lists, tuples and dicts (string or integer keys) of data; an
attribute holding a `torch.Generator` is saved as its state and set back into the generator of
the object restored (so a plugin that draws from its own generator continues its stream). What is
configuration, left as built: anything callable (classes, functions, norm objects), modules,
parameter models (pydantic) and the types the caller names (for probes, `RunInfo`). Any
other value (a numpy array, an object of the plugin's own) stops the checkpoint with a
TypeError naming the attribute: saving it silently wrong would break the promise that a
resumed run ends bit for bit as an uninterrupted one; such a plugin overrides `state_dict`
and `load_state_dict`.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from pydantic import BaseModel

SCALARS = (bool, int, float, str, type(None))  # exact types: numpy's float64 subclasses float but is not plain data


def is_configuration(value: Any, configuration: tuple[type, ...] = ()) -> bool:
    """Values that a plugin gets when it is built, not while it trains."""
    if isinstance(value, torch.Tensor):
        return False
    return callable(value) or isinstance(value, (types.ModuleType, BaseModel, *configuration))


def check_data(value: Any, where: str, records: tuple[type, ...] = ()) -> None:
    """Raise TypeError unless `value` is data a checkpoint can hold (see the module docstring)."""
    if isinstance(value, (torch.Tensor, *records)) or type(value) in SCALARS:
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            check_data(item, f"{where}[{i}]", records)
        return
    if type(value) is dict:
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where}: dict key {key!r} ({type(key).__name__}) cannot be checkpointed; use str or int keys")
            check_data(item, f"{where}[{key!r}]", records)
        return
    raise TypeError(
        f"{where} ({type(value).__module__}.{type(value).__qualname__}) cannot be checkpointed: keep state in tensors, "
        "numbers, strings, lists or dicts, or give the class state_dict() and load_state_dict()"
    )


def attribute_state(obj: Any, skip: tuple[str, ...] = (), records: tuple[type, ...] = (), configuration: tuple[type, ...] = ()) -> dict[str, Any]:
    """Every attribute of `obj` that holds data, by name, but those in `skip` (tensors by
    reference: the checkpoint is written at once), and the state of every generator attribute:
    {"attributes": {name: value}, "generators": {name: state}}."""
    attributes, generators = {}, {}
    for name, value in vars(obj).items():
        if name in skip:
            continue
        if isinstance(value, torch.Generator):
            generators[name] = value.get_state()
        elif not is_configuration(value, configuration):
            check_data(value, f"{type(obj).__qualname__}.{name}", records)
            attributes[name] = value
    return {"attributes": attributes, "generators": generators}


def restore_attributes(obj: Any, state: dict[str, Any]) -> None:
    """Set the attributes saved by `attribute_state`; others keep the value they were built with."""
    for name, value in state["attributes"].items():
        setattr(obj, name, value)
    for name, generator_state in state["generators"].items():
        generator = getattr(obj, name, None)
        if not isinstance(generator, torch.Generator):
            generator = torch.Generator()
            setattr(obj, name, generator)
        generator.set_state(generator_state)
