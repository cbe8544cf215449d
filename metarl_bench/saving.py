"""Saved meta-learners: what ``evaluate(agent, benchmark, save_agent=DIR)`` writes and
:func:`load_agent` reads.

A save is a folder of two files:

- ``state.pt``: the agent's :meth:`~metarl_bench.agents.Agent.state_dict` (tensors,
  numbers, strings, lists and dicts), written by ``torch.save`` and read back with
  ``torch.load(..., weights_only=True)``, so loading runs no code from the file;
- ``manifest.json``: what the state belongs to: the agent (name, class, variant, resolved
  config), the benchmark it was meta-trained for (id, version, task hash), the seed, the
  meta-training steps and seconds, the package versions, and the size and SHA-256 of
  ``state.pt``.

Both are written atomically (temporary file, fsync, rename), the state first and the
manifest last; the manifest's checksum ties them together, so a truncated, edited or
half-replaced save is refused with a message naming the file, never loaded.
:func:`load_agent` builds the agent from the saved config and calls its
``load_state_dict``; :func:`metarl_bench.evaluate` then skips meta-training and refuses a
benchmark other than the one the agent was saved for (another id, or task lists that
changed since).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import platform
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metarl_bench.agents import Agent
from metarl_bench.results import atomic_write_json, current_umask, signals_deferred

if TYPE_CHECKING:
    from metarl_bench.benchmarks import Benchmark
    from metarl_bench.harness import Identity

MANIFEST = "manifest.json"
STATE = "state.pt"
FORMAT = "metarl-bench saved agent"
FORMAT_VERSION = 1
_PACKAGES = ("metarl-bench", "torch", "numpy", "gymnasium", "stable-baselines3", "sb3-contrib")


class SavedAgentError(ValueError):
    """A saved agent that cannot be loaded or used here; the message names the file and the problem."""


@dataclass(frozen=True)
class SavedAgent:
    """Where an agent was loaded from and what its manifest says (``agent.loaded_from``)."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST

    @property
    def seed(self) -> int:
        return int(self.manifest["seed"])

    @property
    def benchmark_id(self) -> str:
        return str(self.manifest["benchmark"]["id"])

    @property
    def task_hash(self) -> str:
        return str(self.manifest["benchmark"]["task_hash"])

    @property
    def variant(self) -> str:
        return str(self.manifest["agent"]["variant"])

    @property
    def named(self) -> bool:
        return bool(self.manifest["agent"].get("named", False))

    def check_benchmark(self, bench: Benchmark) -> None:
        """Raise :class:`SavedAgentError` unless ``bench`` is the benchmark the agent was saved for."""
        if bench.id != self.benchmark_id:
            raise SavedAgentError(
                f"{self.manifest_path}: the agent was meta-trained for {self.benchmark_id}, not {bench.id}; "
                f"evaluate it on {self.benchmark_id}, or meta-train it on {bench.id}"
            )
        if bench.task_hash != self.task_hash:
            raise SavedAgentError(
                f"{self.manifest_path}: the agent was meta-trained for {bench.id} with task hash {self.task_hash}, "
                f"but {bench.id}'s task lists now hash to {bench.task_hash} (they changed since); meta-train it again"
            )

    def meta_train_summary(self) -> dict[str, Any]:
        """A loaded run's ``record.meta_train``: no steps of its own, and where its training came from."""
        saved = self.manifest.get("meta_train", {})
        return {
            "env_steps": 0,
            "wall_seconds": 0.0,
            "loaded_from": str(self.folder),
            "saved": {
                "seed": self.seed,
                "env_steps": saved.get("env_steps"),
                "wall_seconds": saved.get("wall_seconds"),
                "time": self.manifest.get("time"),
            },
        }


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md

    out: dict[str, str | None] = {}
    for pkg in _PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_save_folder(folder: str | Path) -> Path:
    """``folder`` as a Path if a save may be written there: new, empty, or holding a save
    (which is replaced); else :class:`SavedAgentError`. Created, and checked to be writable."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SavedAgentError(f"{folder} is a file; save_agent takes a folder (new, empty, or holding a saved agent)")
    if folder.is_dir():
        entries = [p.name for p in folder.iterdir() if not p.name.startswith(".tmp-")]
        if entries and MANIFEST not in entries:
            raise SavedAgentError(
                f"{folder} holds other files ({', '.join(sorted(entries)[:3])}) and no saved agent; "
                "pass a new or empty folder to save_agent"
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=".tmp-", dir=folder) as f:
            f.write(b"x")
    except OSError as exc:
        raise SavedAgentError(f"{folder}: cannot write a saved agent there ({exc.strerror or exc})") from None
    return folder


def save_agent(
    agent: Agent, folder: str | Path, bench: Benchmark, seed: int, ident: Identity, meta_train: dict[str, Any]
) -> Path:
    """Write ``agent``'s state and manifest to ``folder`` (see the module docstring); returns the manifest's path.

    Called by :func:`metarl_bench.evaluate` right after meta-training. The state is read
    back with ``torch.load(weights_only=True)`` before it replaces anything, so a state
    that could not be loaded later is refused now.
    """
    import torch

    folder = check_save_folder(folder)
    state = agent.state_dict()
    impl = _implementation(agent, bench.family.kind)
    with signals_deferred():
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fchmod(f.fileno(), 0o666 & ~current_umask())
                os.fsync(f.fileno())
            try:
                torch.load(tmp, weights_only=True)
            except Exception as exc:  # torch raises several kinds here
                raise SavedAgentError(
                    f"agent {agent.name!r}: its state_dict holds objects torch.load(weights_only=True) refuses "
                    f"({_one_line(exc)}); keep tensors, numbers, strings, lists and dicts in it"
                ) from None
            digest, size = _sha256(tmp), tmp.stat().st_size
            os.replace(tmp, folder / STATE)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "agent": {
            "name": agent.name,
            "class": f"{impl.__module__}:{impl.__qualname__}",
            "kind": bench.family.kind,
            "variant": ident.variant,
            "named": ident.named,
            "config": ident.config,
        },
        "benchmark": {"id": bench.id, "version": bench.version, "task_hash": bench.task_hash, "tier": bench.tier},
        "seed": int(seed),
        "meta_train": dict(meta_train),
        "state": {"file": STATE, "bytes": size, "sha256": digest},
        "packages": _versions(),
        "python": platform.python_version(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(folder / MANIFEST, manifest)
    return folder / MANIFEST


def _implementation(agent: Agent, kind: str) -> type[Agent]:
    """The class that runs ``agent`` on benchmarks of ``kind`` (a registered name may have one per kind)."""
    from metarl_bench.agents import agent_class, agent_kinds
    from metarl_bench.family import UnknownIdError

    try:
        if kind in agent_kinds(agent.name):
            return agent_class(agent.name, kind)
    except UnknownIdError:
        pass
    return type(agent)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def read_manifest(folder: str | Path) -> SavedAgent:
    """The manifest of the save in ``folder``, checked; :class:`SavedAgentError` naming the file otherwise."""
    folder = Path(folder)
    path = folder / MANIFEST
    if folder.is_file():
        raise SavedAgentError(f"{folder} is a file; pass the folder that evaluate(..., save_agent=DIR) wrote")
    if not folder.is_dir():
        raise SavedAgentError(f"{folder}: no such folder; pass the folder that evaluate(..., save_agent=DIR) wrote")
    if not path.is_file():
        raise SavedAgentError(
            f"{path}: missing, so {folder} holds no saved agent; pass the folder that evaluate(..., save_agent=DIR) wrote"
        )
    again = "the save is damaged; save the agent again (evaluate(..., save_agent=DIR))"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SavedAgentError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SavedAgentError(f"{path}: not valid JSON ({_one_line(exc)}); {again}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SavedAgentError(f"{path}: not a metarl-bench saved agent's manifest; {again}")
    if data.get("format_version") != FORMAT_VERSION:
        raise SavedAgentError(
            f"{path}: format version {data.get('format_version')!r}, but this metarl-bench reads version "
            f"{FORMAT_VERSION}; load it with the metarl-bench that saved it ({(data.get('packages') or {}).get('metarl-bench')}) "
            "or meta-train again"
        )
    shapes = {"agent": ("name", "variant", "config", "kind"), "benchmark": ("id", "task_hash"),
              "state": ("file", "bytes", "sha256")}
    for key, fields in shapes.items():
        sub = data.get(key)
        if not isinstance(sub, dict) or any(f not in sub for f in fields):
            raise SavedAgentError(f"{path}: field {key!r} must be an object with {list(fields)}; {again}")
    seed = data.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0 or not isinstance(data["agent"]["config"], dict):
        raise SavedAgentError(f"{path}: 'seed' must be an integer >= 0 and 'agent.config' an object; {again}")
    if data["state"]["file"] != STATE:
        raise SavedAgentError(f"{path}: state.file must be {STATE!r}, got {data['state']['file']!r}; {again}")
    return SavedAgent(folder, data)


def _agent_class(saved: SavedAgent) -> type[Agent]:
    from metarl_bench.agents import agent_class, agent_kinds
    from metarl_bench.family import UnknownIdError

    info = saved.manifest["agent"]
    try:
        kinds = agent_kinds(info["name"])
    except UnknownIdError:
        kinds = {}
    if info["kind"] in kinds:
        return agent_class(info["name"], info["kind"])
    target = str(info.get("class", ""))
    module, _, qualname = target.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError):
        raise SavedAgentError(
            f"{saved.manifest_path}: agent {info['name']!r} ({target}) is neither registered nor importable; "
            "register it (metarl_bench.register_agent) or import its module before loading"
        ) from None
    if not (isinstance(obj, type) and issubclass(obj, Agent)):
        raise SavedAgentError(f"{saved.manifest_path}: {target} is not an Agent class; the save is damaged")
    return obj


def load_agent(path: str | Path, benchmark: Benchmark | str | None = None) -> Agent:
    """The agent saved in folder ``path`` by ``evaluate(..., save_agent=path)``, restored.

    It is built with its saved config and given its saved state (``load_state_dict``);
    ``agent.loaded_from`` says where it came from. :func:`metarl_bench.evaluate` does not
    meta-train it again, and with the seed it was saved with reproduces the saved run's
    scores exactly. With ``benchmark``, it is checked at once to be the benchmark the agent
    was saved for (``evaluate`` checks it anyway). Every problem (missing, truncated or
    edited files, another benchmark, a config the agent no longer accepts) is a
    :class:`SavedAgentError` naming the file and the mismatch.
    """
    import torch

    saved = read_manifest(path)
    state_path = saved.folder / STATE
    info = saved.manifest["state"]
    again = "the save is damaged; save the agent again (evaluate(..., save_agent=DIR))"
    if not state_path.is_file():
        raise SavedAgentError(f"{state_path}: missing (the manifest {saved.manifest_path} names it); {again}")
    size = state_path.stat().st_size
    if size != info["bytes"] or _sha256(state_path) != info["sha256"]:
        what = f"{size:,} bytes, the manifest says {info['bytes']:,}" if size != info["bytes"] else "its checksum differs"
        raise SavedAgentError(
            f"{state_path}: does not match {saved.manifest_path} ({what}): it is truncated or was changed after saving; "
            f"{again}"
        )
    try:
        state = torch.load(state_path, weights_only=True)
    except Exception as exc:  # torch raises several kinds for a bad file
        raise SavedAgentError(f"{state_path}: torch.load cannot read it ({_one_line(exc)}); {again}") from None
    if not isinstance(state, dict):
        raise SavedAgentError(f"{state_path}: holds a {type(state).__name__}, not a state dict; {again}")
    cls = _agent_class(saved)
    name = saved.manifest["agent"]["name"]
    try:
        agent = cls(**saved.manifest["agent"]["config"])
    except (TypeError, ValueError) as exc:
        raise SavedAgentError(
            f"{saved.manifest_path}: agent {name!r} no longer accepts the saved config ({_one_line(exc)}); "
            "meta-train it again"
        ) from None
    try:
        agent.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise SavedAgentError(
            f"{state_path}: agent {name!r} cannot use the saved state ({_one_line(exc)}); meta-train it again"
        ) from None
    agent.loaded_from = saved
    if benchmark is not None:
        from metarl_bench.benchmarks import benchmark as get_benchmark

        saved.check_benchmark(get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark)
    return agent
