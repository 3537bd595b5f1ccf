"""From per-point flags to anomaly episodes: one event per series per episode.

A series opens an episode after ``min_duration`` flagged points in a row (in the direction the
metric cares about) and closes it after ``quiet_points`` normal points. Re-seeing the same
episode (an at-least-once replay, a long incident) never opens a second anomaly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

_UP_ONLY = re.compile(r"duration|latency|error|cpu|memory|:p\d+|:mean")


def default_direction(key: str) -> int:
    """+1 when only rises matter (latency, errors, saturation), 0 when both ways do (rates)."""
    return 1 if _UP_ONLY.search(key.split("{", 1)[0]) else 0


@dataclass(slots=True)
class Anomaly:
    series: str
    service: str
    first_seen: int  # event time of the first flagged point of the episode, ns
    score: float
    direction: int  # +1 above the baseline, -1 below
    value: float

    @property
    def id(self) -> str:
        return f"{self.series}@{self.first_seen}"

    def to_contract(self) -> dict[str, Any]:
        return {"series": self.series, "service": self.service, "first_seen_unix_nano": self.first_seen, "score": round(self.score, 6)}


@dataclass(slots=True)
class Activity:
    """What the correlator needs from one batch: new episodes, and which series are still anomalous."""

    opened: list[Anomaly]
    active_ids: np.ndarray  # series ids flagged in this batch while in an episode
    active_ts: np.ndarray
    active_scores: np.ndarray


class EpisodeTracker:
    def __init__(self, min_duration: int = 2, quiet_points: int = 3) -> None:
        self.min_duration = min_duration
        self.quiet_points = quiet_points
        self.run = np.zeros(0, dtype=np.int64)
        self.quiet = np.zeros(0, dtype=np.int64)
        self.active = np.zeros(0, dtype=bool)
        self.first_ts = np.zeros(0, dtype=np.int64)
        self.directions = np.zeros(0, dtype=np.int8)  # per series: +1 up only, 0 both

    def _grow(self, size: int, keys: list[str]) -> None:
        old = len(self.run)
        if size > old:
            extra = size - old
            self.run = np.r_[self.run, np.zeros(extra, dtype=np.int64)]
            self.quiet = np.r_[self.quiet, np.zeros(extra, dtype=np.int64)]
            self.active = np.r_[self.active, np.zeros(extra, dtype=bool)]
            self.first_ts = np.r_[self.first_ts, np.zeros(extra, dtype=np.int64)]
            self.directions = np.r_[self.directions, np.array([default_direction(k) for k in keys[old:size]], dtype=np.int8)]

    def update(self, ids: np.ndarray, ts: np.ndarray, values: np.ndarray, scores: np.ndarray,
               directions: np.ndarray, keys: list[str], services: list[str]) -> Activity:  # fmt: skip
        """Advance episodes by one round of points (ids unique); ``keys``/``services`` index by id."""
        self._grow(len(keys), keys)
        want = self.directions[ids]
        flag = (scores >= 0.5) & ((want == 0) | (directions == want))
        run = np.where(flag, self.run[ids] + 1, 0)
        starting = flag & (self.run[ids] == 0)
        self.first_ts[ids[starting]] = ts[starting]
        self.run[ids] = run
        was_active = self.active[ids]
        opens = flag & ~was_active & (run >= self.min_duration)
        quiet = np.where(flag, 0, self.quiet[ids] + 1)
        self.quiet[ids] = quiet
        closes = was_active & (quiet >= self.quiet_points)
        self.active[ids[opens]] = True
        self.active[ids[closes]] = False
        opened = [
            Anomaly(keys[j], services[j], int(self.first_ts[j]), float(scores[i]), int(directions[i]), float(values[i]))
            for i, j in zip(np.flatnonzero(opens), ids[opens], strict=True)
        ]
        live = flag & self.active[ids]
        return Activity(opened, ids[live], ts[live], scores[live])

    def state(self) -> dict[str, np.ndarray]:
        return {"run": self.run, "quiet": self.quiet, "active": self.active, "first_ts": self.first_ts, "directions": self.directions}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        for k in ("run", "quiet", "active", "first_ts", "directions"):
            setattr(self, k, np.array(arrays[k]))
