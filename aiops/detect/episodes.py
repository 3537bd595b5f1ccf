"""From per-point scores to anomaly episodes: one event per series per episode.

A point is flagged when its score reaches 0.5 in a direction the series' policy cares about, or
when it crosses a hard SLO bound. A series opens an episode once it has been flagged for
``min_duration`` points in a row covering ``min_duration_s`` (each point counts its sampling
interval, so 30 s is three 10 s scrapes or one minute-scrape), and closes it after
``quiet_points`` normal points. Re-seeing the same episode (an
at-least-once replay, a long incident) never opens a second anomaly.

Each anomaly carries the series' value just before its episode (``previous``) as well as the
detector's long-term ``baseline``: a step at onset (previous near the baseline, value far from
both) is news, while a value that was already as far off at the point before is a level the
series held before the episode started (a baseline learned in another period, a range widened
by an earlier fault), so its onset dates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aiops.detect.policy import PolicyTable


@dataclass(slots=True)
class Anomaly:
    series: str
    service: str
    first_seen: int  # event time of the first flagged point of the episode, ns
    score: float
    direction: int  # +1 above the baseline, -1 below
    value: float
    baseline: float = float("nan")  # what the series was doing before, for "p99 +480 %"
    previous: float = float("nan")  # the series' last value before the episode's first flagged point

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
    def __init__(self, quiet_points: int = 3) -> None:
        self.quiet_points = quiet_points
        self.run = np.zeros(0, dtype=np.int64)
        self.quiet = np.zeros(0, dtype=np.int64)
        self.active = np.zeros(0, dtype=bool)
        self.first_ts = np.zeros(0, dtype=np.int64)
        self.prev_ts = np.zeros(0, dtype=np.int64)
        self.prev_x = np.zeros(0)  # last value seen (NaN: none yet)
        self.before = np.zeros(0)  # the value before the current run of flagged points started

    def _grow(self, size: int) -> None:
        extra = size - len(self.run)
        if extra > 0:
            self.run = np.r_[self.run, np.zeros(extra, dtype=np.int64)]
            self.quiet = np.r_[self.quiet, np.zeros(extra, dtype=np.int64)]
            self.active = np.r_[self.active, np.zeros(extra, dtype=bool)]
            self.first_ts = np.r_[self.first_ts, np.zeros(extra, dtype=np.int64)]
            self.prev_ts = np.r_[self.prev_ts, np.zeros(extra, dtype=np.int64)]
            self.prev_x = np.r_[self.prev_x, np.full(extra, np.nan)]
            self.before = np.r_[self.before, np.full(extra, np.nan)]

    def update(self, ids: np.ndarray, ts: np.ndarray, values: np.ndarray, scores: np.ndarray,
               directions: np.ndarray, keys: list[str], services: list[str], policy: PolicyTable,
               baselines: np.ndarray | None = None) -> Activity:  # fmt: skip
        """Advance episodes by one round of points (ids unique); ``keys``/``services``/``policy`` index by id."""
        self._grow(len(keys))
        want = policy.direction[ids]
        above, below = values > policy.slo_above[ids], values < policy.slo_below[ids]
        breach = above | below
        scores = np.where(breach, 1.0, scores)
        directions = np.where(above, 1, np.where(below, -1, directions)).astype(np.int8)
        flag = breach | ((scores >= 0.5) & ((want == 0) | (directions == want)))
        run = np.where(flag, self.run[ids] + 1, 0)
        starting = flag & (self.run[ids] == 0)
        self.first_ts[ids[starting]] = ts[starting]
        self.before[ids[starting]] = self.prev_x[ids[starting]]
        self.prev_x[ids] = values
        self.run[ids] = run
        prev = self.prev_ts[ids]
        self.prev_ts[ids] = ts
        covered = ts - self.first_ts[ids] + np.where(prev > 0, ts - prev, 0)  # each point counts its interval
        was_active = self.active[ids]
        opens = flag & ~was_active & (run >= policy.min_duration[ids]) & (covered >= policy.min_duration_ns[ids])
        quiet = np.where(flag, 0, self.quiet[ids] + 1)
        self.quiet[ids] = quiet
        closes = was_active & (quiet >= self.quiet_points)
        self.active[ids[opens]] = True
        self.active[ids[closes]] = False
        base = np.full(len(ids), np.nan) if baselines is None else baselines
        opened = [
            Anomaly(keys[j], services[j], int(self.first_ts[j]), float(scores[i]), int(directions[i]), float(values[i]),
                    float(base[i]), float(self.before[j]))
            for i, j in zip(np.flatnonzero(opens), ids[opens], strict=True)
        ]  # fmt: skip
        live = flag & self.active[ids]
        return Activity(opened, ids[live], ts[live], scores[live])

    def state(self) -> dict[str, np.ndarray]:
        return {"run": self.run, "quiet": self.quiet, "active": self.active, "first_ts": self.first_ts,
                "prev_ts": self.prev_ts, "prev_x": self.prev_x, "before": self.before}  # fmt: skip

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        for k in ("run", "quiet", "active", "first_ts", "prev_ts"):
            setattr(self, k, np.array(arrays[k]))
        for k in ("prev_x", "before"):  # absent from snapshots taken before anomalies carried ``previous``
            setattr(self, k, np.array(arrays[k]) if k in arrays else np.full(len(self.run), np.nan))
