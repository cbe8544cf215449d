"""One identity per agent, shared by the plots and the leaderboard page: a colour, a marker
and a paradigm for every agent name, and the styles of the reference lines.

- The paradigm comes from where the agent is registered (:func:`metarl_bench.agents.agent_kinds`,
  which names a ``"module:Class"`` without importing it): ``metarl_bench.baselines.<paradigm>.*``
  gives one of :data:`PARADIGMS`; any other module (a plugin's) or a name that is not
  registered falls in ``"other"``. A name registered for both kinds of benchmark (``reptile``,
  ``oracle``) takes the paradigm of the kind of the benchmark at hand.
- The colour and marker of the suite's agents are fixed in :data:`BUILTIN` (colour families by
  paradigm: classical references blues, browns, gold and greys; gradient-based reds, oranges and pink;
  in-context purple; SB3 baselines greens and teal; few-shot oranges, plum and greys). Any other name
  gets one drawn from :data:`EXTRA_COLORS` and :data:`MARKERS` by a hash of the name, so an
  agent's identity never depends on which other agents have records.
- A variant (a config other than the tuned default, ``maml-ppo@iterations=50`` or a
  ``--name``) takes its base agent's colour and marker, drawn hollow, with a dashed line
  (one of :data:`VARIANT_DASHES`, by a hash of the variant name).
- The reference lines (the benchmark's random and oracle references, or the random and
  task-ppo records that stand in for them) are thin, dashed, unmarked and drawn beneath the
  agents: :data:`REFERENCE_STYLES`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

# (key, label), in page order
PARADIGMS: tuple[tuple[str, str], ...] = (
    ("classical", "classical references"),
    ("gradient", "gradient-based meta-RL"),
    ("incontext", "in-context meta-RL"),
    ("sb3", "SB3 baselines"),
    ("fewshot", "few-shot (supervised)"),
    ("other", "other (plugins, unregistered)"),
)
PARADIGM_LABELS = dict(PARADIGMS)
_PARADIGM_ORDER = {k: i for i, (k, _) in enumerate(PARADIGMS)}

# name -> (colour, marker); matplotlib marker codes, which the page's script draws too
BUILTIN: dict[str, tuple[str, str]] = {
    # classical references
    "random": ("#7f7f7f", "X"),
    "oracle": ("#000000", "*"),
    "bayes-optimal": ("#1f77b4", "o"),
    "gittins": ("#17becf", "s"),
    "ucb1": ("#393b79", "^"),
    "thompson": ("#6b6ecf", "v"),
    "greedy": ("#8c564b", "D"),
    "epsilon-greedy": ("#c49c94", "P"),
    "psrl": ("#d4a017", "h"),
    # gradient-based meta-RL
    "maml-trpo": ("#d62728", "s"),
    "maml-ppo": ("#ff7f0e", "o"),
    "reptile": ("#e377c2", "^"),
    # in-context meta-RL
    "rl2": ("#9467bd", "D"),
    # SB3 baselines
    "ppo": ("#2ca02c", "o"),
    "multitask-ppo": ("#98df8a", "s"),
    "multitask-ppo-finetune": ("#637939", "^"),
    "task-ppo": ("#00441b", "D"),
    "recurrent-ppo": ("#1b9e77", "v"),
    # few-shot (supervised); reptile and oracle as above
    "maml": ("#e6550d", "o"),
    "fomaml": ("#fdae6b", "s"),
    "meta-sgd": ("#7b4173", "D"),
    "pretrained": ("#3182bd", "v"),
    "scratch": ("#969696", "^"),
    "prior-mean": ("#636363", "p"),
}
EXTRA_COLORS = (
    "#e7298a", "#66a61e", "#8e0152", "#a6761d", "#bcbd22", "#d95f02", "#7570b3", "#b15928",
    "#6a3d9a", "#b2182b", "#2166ac", "#4d9221",
)
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "h", "p", "*")
VARIANT_DASHES: tuple[tuple[float, ...], ...] = ((5.0, 2.0), (6.0, 2.0, 1.5, 2.0), (2.5, 1.5))

# The reference lines: label stem -> matplotlib line style (the page uses the same colours and dashes).
REFERENCE_STYLES: dict[str, dict[str, Any]] = {
    "random": {"color": "#555555", "linestyle": (0, (4.0, 3.0)), "linewidth": 1.1},
    "top": {"color": "#000000", "linestyle": (0, (7.0, 2.0, 1.5, 2.0)), "linewidth": 1.1},  # oracle or task-ppo
}


@dataclass(frozen=True)
class AgentStyle:
    """How one variant is drawn: ``color`` (hex), ``marker`` (a matplotlib code), ``dashes``
    (``()`` for a solid line, else on/off lengths in line widths), ``hollow`` markers for
    variants, and its ``paradigm`` (a key of :data:`PARADIGMS`)."""

    variant: str
    agent: str
    paradigm: str
    color: str
    marker: str
    dashes: tuple[float, ...]
    hollow: bool

    @property
    def linestyle(self) -> Any:
        """The line style for matplotlib: ``"-"`` or ``(0, dashes)``."""
        return "-" if not self.dashes else (0, self.dashes)

    def as_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "paradigm": self.paradigm, "color": self.color, "marker": self.marker,
                "dashes": list(self.dashes), "hollow": self.hollow}


def _digest(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


def base_identity(agent: str) -> tuple[str, str]:
    """``(colour, marker)`` of agent name ``agent``: fixed for the suite's agents, else by a
    hash of the name (so it does not depend on any other agent)."""
    if agent in BUILTIN:
        return BUILTIN[agent]
    h = _digest(agent)
    return EXTRA_COLORS[h % len(EXTRA_COLORS)], MARKERS[(h // len(EXTRA_COLORS)) % len(MARKERS)]


def paradigm(agent: str, kind: str = "rl") -> str:
    """The paradigm of agent name ``agent`` on benchmarks of ``kind`` (``"rl"`` or
    ``"supervised"``): the folder under ``metarl_bench.baselines`` of the module it is
    registered from, else ``"other"`` (plugins, names no longer registered)."""
    from metarl_bench.agents import agent_kinds
    from metarl_bench.family import UnknownIdError

    try:
        kinds = agent_kinds(agent)
    except UnknownIdError:
        return "other"
    target = kinds.get(kind) or next(iter(kinds.values()))
    module = target.__module__ if isinstance(target, type) else str(target).partition(":")[0]
    parts = module.split(".")
    if parts[:2] == ["metarl_bench", "baselines"] and len(parts) > 2 and parts[2] in PARADIGM_LABELS:
        return parts[2]
    return "other"


def style(variant: str, agent: str | None = None, kind: str = "rl") -> AgentStyle:
    """The style of ``variant`` (a leaderboard row: the agent name, or a variant of agent
    ``agent``) on benchmarks of ``kind``."""
    base = agent or variant
    color, marker = base_identity(base)
    is_variant = variant != base
    dashes = VARIANT_DASHES[_digest(variant) % len(VARIANT_DASHES)] if is_variant else ()
    return AgentStyle(variant, base, paradigm(base, kind), color, marker, dashes, is_variant)


def load_registry() -> None:
    """Load the agent registry (the suite's agents, then the plugins'), which :func:`paradigm`
    reads: done once before the leaderboard's worker processes fork, so they inherit it."""
    from metarl_bench.agents import load_agent_plugins

    load_agent_plugins()


def paradigm_order(key: str) -> int:
    """Where paradigm ``key`` comes in :data:`PARADIGMS` (unknown keys last)."""
    return _PARADIGM_ORDER.get(key, len(PARADIGMS))
