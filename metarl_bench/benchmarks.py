"""The benchmark registry: the suite's benchmarks, and those of installed plugins, by id.

A benchmark (:class:`~metarl_bench.benchmark_spec.Benchmark`, importable from here too) is
a versioned, declarative bundle of a family, fixed task lists and a protocol. The suite's
own are plain data in :mod:`metarl_bench.benchmark_defs`; this module registers them (and
their smoke-tier variants) on first lookup, then every plugin's.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from metarl_bench.benchmark_defs import DEFINITIONS
from metarl_bench.benchmark_defs_metaworld import definitions as metaworld_definitions
from metarl_bench.benchmark_spec import Benchmark, Protocol
from metarl_bench.family import UnknownIdError, missing_extra_error

__all__ = [
    "BENCHMARK_ENTRY_POINT_GROUP",
    "Benchmark",
    "Protocol",
    "benchmark",
    "benchmark_ids",
    "benchmark_source",
    "load_benchmark_plugins",
    "register_benchmark",
]


_BENCHMARKS: dict[str, Benchmark] = {}
# benchmark id -> where it comes from: "metarl-bench", a plugin's distribution, or the
# top-level package (or script) that registered it
_BENCHMARK_SOURCES: dict[str, str] = {}
# Installed packages add benchmarks through this entry-point group (see :func:`load_benchmark_plugins`).
BENCHMARK_ENTRY_POINT_GROUP = "metarl_bench.benchmarks"
_BENCHMARK_ID_RE = re.compile(r"^[\w:.-]+/[\w:.-]+?-v\d+$")


def _caller_source() -> str:
    """The top-level package of the module that called :func:`register_benchmark`."""
    import sys

    frame = sys._getframe(2)
    top = str(frame.f_globals.get("__name__", "?")).split(".")[0]
    return "metarl-bench" if top == "metarl_bench" else top


def register_benchmark(b: Benchmark, smoke: dict[str, Any] | None = None) -> None:
    """Register benchmark ``b`` (and, if ``smoke`` is given, its smoke-tier variant
    ``<name>-smoke-vN``: ``b`` with the fields in ``smoke`` replaced, ``smoke["protocol"]``
    replacing protocol fields), so that ``metarl_bench.benchmark(id)``, ``metarl-bench run
    --benchmark ID`` and ``metarl-bench list benchmarks`` know it, and the leaderboard
    publishes its records.

    A benchmark of another package's family registers from that package, through the
    ``metarl_bench.benchmarks`` entry-point group: the entry point names a function that
    calls ``register_benchmark`` (or a :class:`Benchmark`, registered as is); see
    :func:`load_benchmark_plugins`. The id must look like ``Namespace/Name-vN``; an id
    registered already with a different definition is refused (a changed benchmark needs a
    new version), so no plugin replaces a built-in benchmark.
    """
    if not isinstance(b, Benchmark):
        raise TypeError(f"register_benchmark takes a metarl_bench.benchmarks.Benchmark, got {type(b).__name__}")
    if not _BENCHMARK_ID_RE.match(b.id):
        raise ValueError(f"benchmark id {b.id!r} must look like 'Namespace/Name-vN' (e.g. 'MyLab/Maze-v0')")
    b.protocol.validate(b.id)
    if b.headline not in ("online", "final"):
        raise ValueError(f"{b.id}: headline must be 'online' or 'final', got {b.headline!r}")
    new = {b.id: b}
    if smoke is not None:
        smoke = dict(smoke)
        sid = re.sub(r"-v(\d+)$", r"-smoke-v\1", b.id)
        proto = dataclasses.replace(b.protocol, **smoke.pop("protocol", {}))
        proto.validate(sid)
        new[sid] = dataclasses.replace(b, id=sid, tier="smoke", protocol=proto, **smoke)
    for bid, bench in new.items():
        old = _BENCHMARKS.get(bid)
        if old is not None and old != bench:
            raise ValueError(
                f"benchmark {bid!r} is already registered (by {_BENCHMARK_SOURCES.get(bid, '?')}) with another "
                "definition; a changed benchmark needs a new id (bump the -vN)"
            )
    source = _caller_source()
    for bid, bench in new.items():
        _BENCHMARKS[bid] = bench
        _BENCHMARK_SOURCES.setdefault(bid, source)


def benchmark_ids(tier: str | None = None) -> list[str]:
    _load_definitions()
    return sorted(k for k, b in _BENCHMARKS.items() if tier is None or b.tier == tier)


def benchmark(id: str, **_: Any) -> Benchmark:
    _load_definitions()
    if id not in _BENCHMARKS:
        missing = missing_extra_error(id)
        if missing is not None:  # an id of benchmarks whose optional dependency is not installed
            raise missing
        raise UnknownIdError("benchmark", id, list(_BENCHMARKS))
    return _BENCHMARKS[id]


def benchmark_source(id: str) -> str:
    """Where benchmark ``id`` comes from: ``metarl-bench``, the distribution of the plugin that
    registered it, or the package (or script) that called :func:`register_benchmark`."""
    benchmark(id)
    return _BENCHMARK_SOURCES.get(id, "?")


_LOADED = False  # the suite's definitions and the plugins' entry points have been loaded
_DEFINED = False  # the suite's definitions have been registered (once per process)


def _load_benchmark_plugin(ep: Any) -> None:
    """Run one entry point of the benchmarks group; on failure undo what it registered and report it."""
    from metarl_bench.family import entry_point_provider, plugin_failed

    before, sources = dict(_BENCHMARKS), dict(_BENCHMARK_SOURCES)
    try:
        obj = ep.load()
        if isinstance(obj, Benchmark):
            register_benchmark(obj)
        elif callable(obj):
            obj()
        else:
            raise TypeError(f"{ep.value} is neither a Benchmark nor a function that registers benchmarks")
    except Exception as exc:  # any failure in third-party code: report it, keep the rest usable
        _BENCHMARKS.clear()
        _BENCHMARKS.update(before)
        _BENCHMARK_SOURCES.clear()
        _BENCHMARK_SOURCES.update(sources)
        plugin_failed(ep, BENCHMARK_ENTRY_POINT_GROUP, exc)
        return
    provider = entry_point_provider(ep)
    for bid in set(_BENCHMARKS) - set(before):
        _BENCHMARK_SOURCES[bid] = provider


def load_benchmark_plugins() -> None:
    """Register the suite's benchmarks, then every installed package's, once per process.

    An entry point of the ``metarl_bench.benchmarks`` group names a function that calls
    :func:`register_benchmark` (or a :class:`Benchmark`). A plugin that fails to import or
    register is skipped: one line on stderr names it, its distribution and the error,
    :func:`metarl_bench.family.plugin_errors` lists it, and what it registered before failing
    is removed.
    """
    _load_definitions()


def _load_definitions() -> None:
    global _LOADED, _DEFINED
    if _LOADED:
        return
    _LOADED = True
    import importlib.metadata

    if not _DEFINED:
        _DEFINED = True
        for b, smoke in [*DEFINITIONS, *metaworld_definitions()]:  # Meta-World's only where it is installed
            register_benchmark(b, smoke=smoke)
    for ep in importlib.metadata.entry_points(group=BENCHMARK_ENTRY_POINT_GROUP):
        _load_benchmark_plugin(ep)
