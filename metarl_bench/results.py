"""Results records: one schema-versioned JSON file per (benchmark, agent, seed).

``record.to_dict()`` is exactly the JSON written under
``results/<benchmark id>/<agent>/seed-<n>.json``. Writes are atomic (temporary file in
the same folder, fsync, ``os.replace``), so an interrupted run never leaves half a
file. :func:`load_record` validates and raises :class:`RecordError` naming the file and
the problem.

Per-episode returns are stored as compact arrays: little-endian float32, zlib, base64,
with their shape, so a bandit record of 1,000 tasks x 10 runs x 110 episodes stays small.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
DEFAULT_RESULTS = Path("results")


class RecordError(ValueError):
    """A results file that cannot be read or fails validation."""


def encode_array(arr: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(arr, dtype="<f4")
    return {
        "dtype": "float32",
        "shape": list(a.shape),
        "encoding": "zlib+base64",
        "data": base64.b64encode(zlib.compress(a.tobytes(), 9)).decode("ascii"),
    }


def decode_array(obj: Any, where: str = "array") -> np.ndarray:
    if not isinstance(obj, dict) or not {"dtype", "shape", "encoding", "data"} <= set(obj):
        raise RecordError(f"{where}: expected an encoded array with dtype, shape, encoding and data")
    if obj["dtype"] != "float32" or obj["encoding"] != "zlib+base64":
        raise RecordError(f"{where}: unsupported dtype/encoding {obj['dtype']}/{obj['encoding']}")
    try:
        raw = zlib.decompress(base64.b64decode(obj["data"]))
        arr = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        return arr.reshape([int(s) for s in obj["shape"]])
    except (ValueError, zlib.error, TypeError) as exc:
        raise RecordError(f"{where}: corrupt array data ({exc})") from None


@dataclass
class Record:
    """The outcome of one ``evaluate`` call. See the module docstring for the layout."""

    benchmark: dict[str, Any]  # id, version, task_hash, tier, headline, lower_is_better
    agent: dict[str, Any]  # name, config
    seed: int
    meta_train: dict[str, Any]  # env_steps, wall_seconds
    returns: np.ndarray  # (tasks, runs, episodes): return (or loss) of every episode
    x: np.ndarray  # (episodes,): experience before each episode column
    phase: list[str]  # (episodes,): "budget" or "final"
    curve: dict[str, list[float]]  # x, mean, se
    scores: dict[str, Any]  # online/final {value, se}, normalized_{online,final}
    provenance: dict[str, Any]
    evaluation: dict[str, Any] = field(default_factory=dict)  # env_steps, wall_seconds, stage size
    extra: dict[str, Any] = field(default_factory=dict)

    # -- (de)serialisation --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to disk (a deep copy: editing it leaves the record alone)."""
        return copy.deepcopy({
            "schema_version": SCHEMA_VERSION,
            "benchmark": self.benchmark,
            "agent": self.agent,
            "seed": self.seed,
            "meta_train": self.meta_train,
            "evaluation": self.evaluation,
            "episodes": {
                "returns": encode_array(self.returns),
                "x": [float(v) for v in self.x],
                "phase": list(self.phase),
                "layout": "tasks x runs x episodes",
            },
            "curve": self.curve,
            "scores": self.scores,
            "provenance": self.provenance,
            "extra": self.extra,
        })

    @classmethod
    def from_dict(cls, d: Any, where: str = "record") -> Record:
        if not isinstance(d, dict):
            raise RecordError(f"{where}: top level must be a JSON object")
        if d.get("schema_version") != SCHEMA_VERSION:
            raise RecordError(
                f"{where}: schema_version {d.get('schema_version')!r} is not {SCHEMA_VERSION}; "
                f"re-run the agent to regenerate this record"
            )
        need = ["benchmark", "agent", "seed", "meta_train", "episodes", "curve", "scores", "provenance"]
        missing = [k for k in need if k not in d]
        if missing:
            raise RecordError(f"{where}: missing fields {missing}")
        for key, sub in (("benchmark", ["id", "version", "task_hash", "headline"]), ("agent", ["name", "config"])):
            if not isinstance(d[key], dict) or any(s not in d[key] for s in sub):
                raise RecordError(f"{where}: field {key!r} must be an object with {sub}")
        eps = d["episodes"]
        if not isinstance(eps, dict) or not {"returns", "x", "phase"} <= set(eps):
            raise RecordError(f"{where}: 'episodes' must hold returns, x and phase")
        returns = decode_array(eps["returns"], f"{where}: episodes.returns")
        if returns.ndim != 3:
            raise RecordError(f"{where}: episodes.returns must be tasks x runs x episodes, got shape {returns.shape}")
        if len(eps["x"]) != returns.shape[2] or len(eps["phase"]) != returns.shape[2]:
            raise RecordError(f"{where}: episodes.x and phase must have one entry per episode column")
        if not np.all(np.isfinite(returns)):
            raise RecordError(f"{where}: episodes.returns contains NaN or inf")
        scores = d["scores"]
        for k in ("online", "final"):
            s = scores.get(k) if isinstance(scores, dict) else None
            if not isinstance(s, dict) or not isinstance(s.get("value"), (int, float)):
                raise RecordError(f"{where}: scores.{k}.value missing or not a number")
        return cls(
            benchmark=d["benchmark"],
            agent=d["agent"],
            seed=int(d["seed"]),
            meta_train=d["meta_train"],
            returns=returns,
            x=np.asarray(eps["x"], dtype=np.float64),
            phase=list(eps["phase"]),
            curve=d["curve"],
            scores=d["scores"],
            provenance=d["provenance"],
            evaluation=d.get("evaluation", {}),
            extra=d.get("extra", {}),
        )

    # -- convenience ----------------------------------------------------------------------
    @property
    def benchmark_id(self) -> str:
        return str(self.benchmark["id"])

    @property
    def agent_name(self) -> str:
        return str(self.agent["name"])

    @property
    def variant(self) -> str:
        """The record's row and folder name: the agent's name when it ran its default
        configuration for the benchmark, else the variant name stored in ``agent.variant``
        (derived from the overrides, or given with ``--name``)."""
        return str(self.agent.get("variant") or self.agent["name"])

    def score_matrix(self, which: str = "headline") -> np.ndarray:
        """Per-(run, task) scores, shape ``(runs, tasks)`` (rliable's layout)."""
        if which == "headline":
            which = str(self.benchmark["headline"])
        budget = np.array([p == "budget" for p in self.phase])
        if which == "online":
            per = self.returns[:, :, budget].sum(axis=2)
        elif which == "final":
            per = self.returns[:, :, ~budget].mean(axis=2)
        else:
            raise ValueError(f"unknown score {which!r}; use 'online', 'final' or 'headline'")
        return per.T

    def path(self, root: str | Path = DEFAULT_RESULTS) -> Path:
        return record_path(root, self.benchmark_id, self.variant, self.seed)

    def save(self, root: str | Path = DEFAULT_RESULTS) -> Path:
        path = self.path(root)
        atomic_write_json(path, self.to_dict())
        return path


def record_path(root: str | Path, benchmark_id: str, variant: str, seed: int) -> Path:
    """``<root>/<benchmark id>/<variant>/seed-<n>.json``; ``variant`` is the agent's name for
    its default configuration (see :attr:`Record.variant`)."""
    return Path(root) / benchmark_id / variant / f"seed-{seed}.json"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write JSON to ``path`` atomically: a reader sees the old file or the new, never half."""
    atomic_write_text(path, json.dumps(data, default=_json_default, allow_nan=False, separators=(",", ":")))


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_record(path: str | Path) -> Record:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecordError(f"{path}: cannot read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); the file is truncated or was edited. "
            f"Delete it and re-run `metarl-bench run` for this benchmark/agent/seed."
        ) from None
    return Record.from_dict(data, where=str(path))


def iter_record_paths(root: str | Path = DEFAULT_RESULTS) -> Iterator[Path]:
    root = Path(root)
    if not root.exists():
        return
    for p in sorted(root.rglob("seed-*.json")):
        if not any(part.startswith(".") for part in p.relative_to(root).parts):
            yield p


def load_all(root: str | Path = DEFAULT_RESULTS) -> tuple[list[Record], list[RecordError]]:
    """Every record under ``root`` and the errors of those that failed validation."""
    records, errors = [], []
    for p in iter_record_paths(root):
        try:
            records.append(load_record(p))
        except RecordError as exc:
            errors.append(exc)
    return records, errors

