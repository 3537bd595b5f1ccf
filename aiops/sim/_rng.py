"""Buffered draws from a seeded numpy Generator.

Trace and log generation needs thousands of scalar draws per step; numpy scalar calls cost
microseconds each, so uniforms, normals and id bytes are drawn in blocks and handed out one by
one. Deterministic: the same call sequence gives the same values.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Draws"]

_BLOCK = 4096


class Draws:
    """Scalar uniforms, normals, ints and hex ids from one ``numpy.random.Generator``."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._u: list[float] = []
        self._n: list[float] = []
        self._b = b""
        self._bi = 0

    def u(self) -> float:
        """A uniform in [0, 1)."""
        if not self._u:
            self._u = self.rng.random(_BLOCK).tolist()
        return self._u.pop()

    def n(self) -> float:
        """A standard normal."""
        if not self._n:
            self._n = self.rng.standard_normal(_BLOCK).tolist()
        return self._n.pop()

    def lognormal(self, median: float, sigma: float) -> float:
        """A lognormal draw with the given median."""
        return median * math.exp(sigma * self.n())

    def randint(self, lo: int, hi: int) -> int:
        """An int in [lo, hi]."""
        return lo + int(self.u() * (hi - lo + 1))

    def poisson(self, lam: float) -> int:
        """A Poisson draw (numpy's, for exactness at any rate)."""
        return int(self.rng.poisson(lam)) if lam > 0 else 0

    def hex(self, nbytes: int) -> str:
        """``nbytes`` random bytes as lowercase hex (trace/span ids, request ids)."""
        if self._bi + nbytes > len(self._b):
            self._b = self.rng.bytes(_BLOCK * 8)
            self._bi = 0
        out = self._b[self._bi : self._bi + nbytes].hex()
        self._bi += nbytes
        return out

    def choice(self, items: list[str]) -> str:
        """One item, uniformly."""
        return items[int(self.u() * len(items))]
