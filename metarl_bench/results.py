"""Results records: one schema-versioned JSON file per (benchmark, agent config, seed).

A record's identity is its benchmark (id, version, task hash), its agent's name, the
agent's resolved configuration and its seed. ``record.to_dict()`` is exactly the JSON
written under ``results/<benchmark id>/<variant>/seed-<n>.json``, where the variant is
the agent's name for its default configuration on that benchmark and otherwise a name of
its own: derived from the settings that differ from the default (``ucb1@c=0.5``, see
:func:`variant_name`) or chosen by the user (``--name``). So a non-default configuration
is stored beside the default, never over it.

Writes are atomic (temporary file in the same folder, fsync, ``os.replace``) and get the
mode a plain ``open`` would give under the process's umask, so an interrupted run never
leaves half a file and a shared results folder stays readable. :func:`load_record`
validates and raises :class:`RecordError` naming the file and the problem.

Per-episode returns are stored as compact arrays: little-endian float32, zlib, base64,
with their shape, so a bandit record of 1,000 tasks x 10 runs x 110 episodes stays small.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import signal
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
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
        seed = d["seed"]
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise RecordError(f"{where}: seed must be an integer >= 0, got {seed!r}; the file was edited. "
                              f"Delete it and re-run `metarl-bench run` for this benchmark/agent/seed.")
        variant = d["agent"].get("variant")
        if variant is not None and (not isinstance(variant, str) or not _VARIANT_RE.fullmatch(variant)):
            raise RecordError(f"{where}: agent.variant must be a folder-safe name, got {variant!r}")
        eps = d["episodes"]
        if not isinstance(eps, dict) or not {"returns", "x", "phase"} <= set(eps):
            raise RecordError(f"{where}: 'episodes' must hold returns, x and phase")
        if not isinstance(eps["x"], list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in eps["x"]
        ):
            raise RecordError(f"{where}: episodes.x must be a list of numbers")
        if not isinstance(eps["phase"], list) or not all(p in ("budget", "final") for p in eps["phase"]):
            raise RecordError(f"{where}: episodes.phase must be a list of 'budget'/'final'")
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
            seed=seed,
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


# A variant is one folder name: letters, digits and ``._+=,@~-``, at most 120 characters.
_VARIANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=,@~-]{0,119}")
_MAX_VARIANT = 120


def _value_text(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "none"}[v]
    if isinstance(v, float):
        return repr(v)  # the shortest text that reads back as v: 0.5, 1e-05, 1.0
    if isinstance(v, (list, tuple)):
        return "-".join(_value_text(x) for x in v)
    return str(v)


def variant_name(agent_name: str, changed: dict[str, Any]) -> str:
    """The folder and row name of ``agent_name`` run with the settings ``changed`` from its
    default configuration: the agent's name when nothing changed, else
    ``<agent>@key=value,key=value`` with the keys sorted.

    Deterministic and folder-safe: characters other than letters, digits and ``._+=,-`` in
    a value become ``_``, and a name that had to be altered or shortened ends with ``~``
    and 8 hex digits of a hash of the exact settings, so different settings never share a
    name.
    """
    if not changed:
        return agent_name
    body = ",".join(f"{k}={_value_text(changed[k])}" for k in sorted(changed))
    safe = re.sub(r"[^A-Za-z0-9._+=,-]", "_", body)
    name = f"{agent_name}@{safe}"
    if safe != body or len(name) > _MAX_VARIANT:
        digest = hashlib.sha256(
            json.dumps(changed, sort_keys=True, default=_json_default).encode()
        ).hexdigest()[:8]
        name = f"{name[: _MAX_VARIANT - 9]}~{digest}"
    return name


def check_variant_name(name: str) -> str:
    """``name`` if it can be a user-chosen variant name (``--name``), else ``ValueError``."""
    if not _VARIANT_RE.fullmatch(name) or "@" in name:
        raise ValueError(
            f"--name {name!r} is not a usable name: use letters, digits and ._+=,~- (no '@', which marks "
            f"names derived from settings), starting with a letter or digit, at most {_MAX_VARIANT} characters"
        )
    return name


def as_json(obj: Any) -> Any:
    """``obj`` as it reads back from a record's JSON (tuples become lists, numpy scalars numbers)."""
    return json.loads(json.dumps(obj, default=_json_default))


def config_differences(
    stored: dict[str, Any], requested: dict[str, Any], field_defaults: dict[str, Any] | None = None
) -> dict[str, tuple[Any, Any]]:
    """The settings on which a stored config and a requested one differ: ``{key: (stored, requested)}``.

    Both are compared as JSON. A key absent from the stored config (a field added to the
    agent after the record was written) counts as equal when the requested value is that
    field's default in ``field_defaults``, since a new field's default keeps the old behaviour.
    """
    a, b = as_json(stored), as_json(requested)
    defaults = as_json(field_defaults or {})
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(a) | set(b)):
        if key in a and key in b:
            if a[key] != b[key]:
                out[key] = (a[key], b[key])
        elif key in b:
            if key not in defaults or defaults[key] != b[key]:
                out[key] = ("<absent>", b[key])
        else:
            out[key] = (a[key], "<absent>")
    return out


def format_differences(diff: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k}: {s!r} stored, {r!r} requested" for k, (s, r) in diff.items())


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


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only read here)
    os.umask(mask)
    return mask


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs; one that arrives meanwhile is acted on
    (KeyboardInterrupt, or whatever handler was installed) when the block ends. For
    sections that a Ctrl-C must not cut in half: a record's temporary file and its rename,
    the process pool's internal locks.

    Python runs signal handlers in the main thread between bytecodes, so the block swaps in
    a handler that only notes the signal (blocking it in one thread would not do: the
    kernel hands a process-wide signal to any thread, torch's included). Elsewhere than the
    main thread, where handlers cannot be set, the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[signal.Signals] = []
    old = {sig: signal.signal(sig, lambda signum, frame: caught.append(signal.Signals(signum)))
           for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if caught:
            handler = old[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, with the mode ``open(path, "w")`` would give.

    ``mkstemp`` creates its file readable by its owner only; the file is given
    ``0o666 & ~umask`` before the rename, so others can read a shared results folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with signals_deferred():  # a Ctrl-C lands before or after the write, never inside it
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fchmod(f.fileno(), 0o666 & ~current_umask())
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def load_record(path: str | Path) -> Record:
    """Read and validate one record; any problem is a :class:`RecordError` naming ``path``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecordError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"{path}: not UTF-8 text (byte {exc.start}); the file is damaged or not a record. "
            f"Delete it and re-run `metarl-bench run` for this benchmark/agent/seed."
        ) from None
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



# --- a record for people ----------------------------------------------------------------------


def _num(v: Any, width: int = 10) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v:
        return f"{'-':>{width}}"
    return f"{v:>{width}.4g}" if abs(v) >= 1e5 or (v != 0 and abs(v) < 1e-3) else f"{v:>{width}.4f}"


def format_record_summary(record: Record, max_curve_points: int = 6) -> str:
    """A short text summary of ``record`` for a terminal: a table of its scores (value,
    standard error over test tasks, normalised value) with the benchmark's headline score
    marked ``*``, a few points of its adaptation curve, and its meta-training and
    evaluation cost (for an agent loaded from a save, where it came from)."""
    b, s = record.benchmark, record.scores
    headline = str(b.get("headline", "online"))
    better = "lower" if b.get("lower_is_better") else "higher"
    x_label = str(record.extra.get("x_label", "episodes of experience"))
    y_label = str(record.extra.get("y_label", "return"))
    lines = [f"{record.variant} on {record.benchmark_id} (seed {record.seed})"]
    lines.append(f"  {'score':<14}{'value':>10}{'se':>10}{'normalised':>12}")
    names = ["online", "final"] + sorted(
        k for k, v in s.items()
        if k not in ("online", "final") and not k.startswith("normalized_") and isinstance(v, dict) and "value" in v
    )
    kinds = set()
    for k in names:
        v = s.get(k) or {}
        norm = s.get(f"normalized_{k}")
        if isinstance(norm, dict):
            kinds.add(str(norm.get("normalization")))
        mark = "*" if k == headline else " "
        norm_text = _num(norm.get("value"), 12) if isinstance(norm, dict) else f"{'-':>12}"
        lines.append(f"{mark} {k:<14}{_num(v.get('value'))}{_num(v.get('se'))}{norm_text}")
    note = f"  * headline ({better} is better); se over test tasks"
    if kinds:
        how = "per test task" if kinds == {"per-task"} else "by the benchmark's references"
        note += f"; normalised: 0 = random, 1 = oracle, {how}"
    lines.append(note)
    xs, means = list(record.curve.get("x", [])), list(record.curve.get("mean", []))
    if xs and len(xs) == len(means):
        if len(xs) > max_curve_points:
            idx = sorted({round(i * (len(xs) - 1) / (max_curve_points - 1)) for i in range(max_curve_points)})
        else:
            idx = list(range(len(xs)))
        points = "  ".join(f"{xs[i]:g}: {means[i]:.4g}" for i in idx)
        lines.append(f"  curve, mean {y_label} by {x_label}: {points}")
    mt = record.meta_train
    unit = "labelled examples" if "x_label" in record.extra else "env steps"
    if mt.get("loaded_from"):
        saved = mt.get("saved") or {}
        steps = saved.get("env_steps")
        trained = f"{steps:,} {unit}" if isinstance(steps, int) else "unknown steps"
        lines.append(f"  meta-training: none here; loaded from {mt['loaded_from']} (trained with seed "
                     f"{saved.get('seed')}, {trained})")
    else:
        lines.append(f"  meta-training: {int(mt.get('env_steps', 0) or 0):,} {unit}, "
                     f"{float(mt.get('wall_seconds', 0) or 0):.1f} s")
    ev = record.evaluation
    if ev:
        steps = int(ev.get("env_steps", 0) or 0)
        what = f"{steps:,} env steps, " if steps else ""
        lines.append(f"  evaluation: {what}{float(ev.get('wall_seconds', 0) or 0):.1f} s")
    return "\n".join(lines)
