"""Counter-based random streams shared by single and batched environments.

Why hand-written: a batched env must give sub-env ``i`` exactly the random numbers that a
single env seeded with ``seed + i`` would draw (see "Tasks and families" in docs/design.md), while stepping 1,024
sub-envs in one array operation. numpy's ``Generator`` objects are sequential and cannot
be advanced in bulk, so one Python call per sub-env and step would be needed, which costs
more than the dynamics themselves. A counter-based generator (each number is a hash of a
per-stream key and a per-stream counter, as in Salmon et al. 2011, "Parallel random
numbers: as easy as 1, 2, 3") vectorises trivially: the single env keeps one
``(key, counter)`` pair, the batched env keeps arrays of them, and both run the same hash.

The hash is SplitMix64's finaliser (Steele et al. 2014), applied to the key mixed with the
hashed counter. Its statistical quality is ample for environment noise.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_TWO_53 = float(2**-53)

U64 = npt.NDArray[np.uint64]


def _mix(z: U64) -> U64:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    z = z + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def seed_to_key(seeds: npt.ArrayLike) -> U64:
    """Map integer seeds (any size, >= 0) to stream keys."""
    arr = np.asarray(seeds, dtype=object).reshape(-1)
    low = np.array([int(s) & _MASK for s in arr], dtype=np.uint64)
    high = np.array([(int(s) >> 64) & _MASK for s in arr], dtype=np.uint64)
    return _mix(_mix(low) ^ high)


class Streams:
    """``n`` independent uniform streams; ``uniform(mask)`` advances only masked streams.

    A single env uses ``n = 1``; sub-env ``i`` of a batched env seeded with ``s`` uses the
    key of seed ``s + i``, exactly as the single env seeded with ``s + i`` does.
    """

    def __init__(self, n: int) -> None:
        self.keys = np.zeros(n, dtype=np.uint64)
        self.counters = np.zeros(n, dtype=np.uint64)

    def seed(self, seeds: npt.ArrayLike, index: npt.NDArray[np.bool_] | None = None) -> None:
        keys = seed_to_key(seeds)
        if index is None:
            self.keys[:] = keys
            self.counters[:] = 0
        else:
            self.keys[index] = keys
            self.counters[index] = 0

    def uniform(self, mask: npt.NDArray[np.bool_] | None = None, size: int = 1) -> npt.NDArray[np.float64]:
        """Uniforms in [0, 1) of shape ``(n, size)``; counters advance by ``size`` where ``mask``."""
        offsets = np.arange(size, dtype=np.uint64)
        ctr = self.counters[:, None] + offsets[None, :]
        with np.errstate(over="ignore"):
            bits = _mix(self.keys[:, None] ^ _mix(ctr))
        if mask is None:
            self.counters += np.uint64(size)
        else:
            self.counters += np.where(mask, np.uint64(size), np.uint64(0))
        return (bits >> np.uint64(11)).astype(np.float64) * _TWO_53

    def normal(self, mask: npt.NDArray[np.bool_] | None = None, size: int = 1) -> npt.NDArray[np.float64]:
        """Standard normals via Box-Muller on ``2 * size`` uniforms per stream."""
        u = self.uniform(mask, 2 * size)
        u1, u2 = u[:, :size], u[:, size:]
        return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def entropy_seeds(rng: np.random.Generator, n: int) -> list[int]:
    """Seeds for unseeded resets, drawn from an explicit generator."""
    return [int(s) for s in rng.integers(0, 2**63 - 1, size=n, dtype=np.int64)]
