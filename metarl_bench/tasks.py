"""Tasks: small frozen dataclasses, hashable and JSON round-trippable (never pickled)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

T = TypeVar("T", bound="Task")


def _freeze(value: Any) -> Any:
    """Lists and arrays become nested tuples of Python floats/ints, so tasks hash."""
    if isinstance(value, np.ndarray):
        return _tuples(value.tolist())
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _tuples(value: Any) -> Any:
    """``ndarray.tolist()``'s nested lists (uniform depth, Python scalars) as nested tuples:
    the fast path of :func:`_freeze` (tabular-MDP tasks hold 550 numbers each)."""
    if isinstance(value, list):
        if value and isinstance(value[0], list):
            return tuple(map(_tuples, value))
        return tuple(value)
    return value


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    """The dataclass field names of a task class (cached: tasks are built by the thousand)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class Task:
    """Base class of every family's task.

    Subclasses are frozen dataclasses whose fields are numbers or nested tuples of
    numbers, and implement :meth:`validate` (raise ``ValueError`` naming the field and
    its allowed range) and :meth:`features` (the flat vector appended to observations
    when an env exposes its task).
    """

    family_name: ClassVar[str] = "task"

    def __post_init__(self) -> None:
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if type(value) not in (float, int):  # plain numbers are frozen already
                object.__setattr__(self, name, _freeze(value))
        self.validate()

    def validate(self) -> None:  # pragma: no cover - overridden
        pass

    def features(self) -> np.ndarray:
        """The task as a flat float32 vector (for oracle and multi-task agents)."""
        parts = [np.asarray(getattr(self, f.name), dtype=np.float64).ravel() for f in dataclasses.fields(self)]
        return np.concatenate(parts).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _thaw(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        missing = names - set(data)
        if unknown or missing:
            raise ValueError(
                f"{cls.__name__}: task dict has unknown fields {sorted(unknown)} and lacks {sorted(missing)}; "
                f"expected exactly {sorted(names)}"
            )
        return cls(**{k: _freeze(v) for k, v in data.items()})


# --- validation helpers shared by the families -------------------------------------------


def check_number(task: str, name: str, value: Any, low: float, high: float) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite real number in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{task}.{name} must be a number in [{low}, {high}], got {value!r}")
    if not math.isfinite(value) or not (low <= value <= high):
        raise ValueError(f"{task}.{name} must be a finite number in [{low}, {high}], got {value!r}")


def check_array(
    task: str, name: str, value: Sequence[Any], shape: tuple[int, ...], low: float, high: float
) -> np.ndarray:
    """Raise ``ValueError`` unless ``value`` has ``shape`` and finite entries in ``[low, high]``."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{task}.{name} must be numeric of shape {shape}: {exc}") from None
    if arr.shape != shape:
        raise ValueError(f"{task}.{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{task}.{name} must be finite (found NaN or inf)")
    if arr.size and (arr.min() < low or arr.max() > high):
        raise ValueError(f"{task}.{name} entries must lie in [{low}, {high}], got range [{arr.min()}, {arr.max()}]")
    return arr
