"""Every learner and reference agent of the suite, registered by name (lazy imports)."""

from __future__ import annotations

from metarl_bench.agents import register_agent

# name -> "module:Class". Keep alphabetical within each group.
# references
register_agent("random", "metarl_bench.baselines.reference:RandomAgent")
