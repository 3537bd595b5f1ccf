"""A robust online baseline per series: EWMA level and EW mean absolute deviation.

The first detector of the engine, kept deliberately simple: after a warm-up, a point scores by
how many robust deviations it sits from the level, mapped into [0, 1) so that the alarm
threshold lands on 0.5. Points are scored before they are learned; flagged points move the
baseline only a little (so an incident does not teach the detector that it is normal), and after
``rebaseline_after`` flagged points in a row the level jumps to the new regime instead of
alarming forever.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_MAD_TO_SIGMA = 1.2533  # E|x - mu| = sigma * sqrt(2/pi) for a normal


class RobustBank:
    """State of many series in numpy arrays; one call scores or learns a whole batch.

    >>> bank = RobustBank(warmup=5)
    >>> ids = np.array([0])
    >>> for v in [10.0, 11.0, 9.0, 10.5, 9.5, 10.0]:
    ...     bank.learn_batch(ids, np.array([v]))
    >>> bool(bank.score_batch(ids, np.array([30.0]))[0][0] > 0.5)
    True
    """

    VERSION = 1

    def __init__(
        self,
        alpha: float = 0.05,
        warmup: int = 20,
        threshold: float = 6.0,
        rel_floor: float = 0.01,
        protect: float = 0.1,
        rebaseline_after: int = 30,
    ) -> None:
        self.alpha = alpha
        self.warmup = warmup
        self.threshold = threshold
        self.rel_floor = rel_floor
        self.protect = protect
        self.rebaseline_after = rebaseline_after
        self.n = np.zeros(0, dtype=np.int64)
        self.level = np.zeros(0)
        self.dev = np.zeros(0)
        self.run = np.zeros(0, dtype=np.int64)

    def params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("alpha", "warmup", "threshold", "rel_floor", "protect", "rebaseline_after")}

    def _grow(self, size: int) -> None:
        if size > len(self.n):
            extra = max(size, 2 * len(self.n)) - len(self.n)
            self.n = np.r_[self.n, np.zeros(extra, dtype=np.int64)]
            self.level = np.r_[self.level, np.zeros(extra)]
            self.dev = np.r_[self.dev, np.zeros(extra)]
            self.run = np.r_[self.run, np.zeros(extra, dtype=np.int64)]

    def _z(self, ids: np.ndarray, x: np.ndarray) -> np.ndarray:
        level = self.level[ids]
        scale = np.maximum(self.dev[ids] * _MAD_TO_SIGMA, self.rel_floor * np.abs(level))
        scale = np.maximum(scale, 1e-9)
        return np.where(self.n[ids] >= self.warmup, (x - level) / scale, 0.0)

    def score_batch(self, ids: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(score in [0, 1), direction +1/-1) per point; leaves the state untouched."""
        self._grow(int(ids.max()) + 1 if len(ids) else 0)
        z = self._z(ids, x)
        z2 = z * z
        return z2 / (z2 + self.threshold**2), np.where(z >= 0, 1, -1).astype(np.int8)

    def learn_batch(self, ids: np.ndarray, x: np.ndarray) -> None:
        """Learn one point per series (ids must be unique within the call)."""
        self._grow(int(ids.max()) + 1 if len(ids) else 0)
        z = self._z(ids, x)
        flagged = np.abs(z) >= self.threshold
        n = self.n[ids]
        a = np.maximum(self.alpha, 1.0 / (n + 1))
        a = np.where(flagged, a * self.protect, a)
        level = self.level[ids]
        err = x - level
        self.level[ids] = level + a * err
        self.dev[ids] = np.where(n == 0, 0.0, self.dev[ids] + a * (np.abs(err) - self.dev[ids]))
        self.n[ids] = n + 1
        run = np.where(flagged, self.run[ids] + 1, 0)
        shift = run >= self.rebaseline_after
        if shift.any():
            moved = ids[shift]
            self.level[moved] = x[shift]
            run[shift] = 0
        self.run[ids] = run

    def state(self) -> dict[str, np.ndarray]:
        return {"n": self.n, "level": self.level, "dev": self.dev, "run": self.run}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.n, self.level, self.dev, self.run = (np.array(arrays[k]) for k in ("n", "level", "dev", "run"))
