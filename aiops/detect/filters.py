"""Deciding is separate from scoring: filters read detector scores and say what is news.

An operator wants one page when a series goes bad, not one per point while it stays bad.
:class:`OnsetFilter` passes a score only when it beats the recent maximum of that series
(which decays with a half-life), so a long anomaly reports its onset, and a later, worse
turn reports again; everything else becomes 0. It keeps one float per series.
"""

from __future__ import annotations

import numpy as np


class OnsetFilter:
    """``filter(ids, scores)`` → scores that are news, else 0; vectorized, one state float per series.

    >>> f = OnsetFilter(half_life=10)
    >>> [float(f.filter(np.array([0]), np.array([s]))[0]) for s in (0.9, 0.9, 0.8, 0.95)]
    [0.9, 0.0, 0.0, 0.95]
    """

    def __init__(self, half_life: float = 200.0) -> None:
        self.half_life = half_life
        self.decay = 0.5 ** (1.0 / half_life)
        self.recent = np.zeros(0)

    def filter(self, ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if len(ids) and ids.max() >= len(self.recent):
            self.recent = np.r_[self.recent, np.zeros(int(ids.max()) + 1 - len(self.recent))]
        # compare in "halvings of the tail probability", where very strong scores stay apart
        strength = -np.log2(np.maximum(1.0 - scores, 1e-300))
        recent = self.recent[ids]
        news = strength > recent  # beats what was already reported, before this step's decay
        self.recent[ids] = np.maximum(recent * self.decay, strength)
        return np.where(news, scores, 0.0)

    def state(self) -> dict[str, np.ndarray]:
        return {"recent": self.recent}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.recent = np.array(arrays["recent"], dtype=np.float64)
