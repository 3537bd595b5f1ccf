"""Input drift per source: series that appear, series that vanish, and shifted value levels.

A *source* is the signal a series comes from (``metrics``, ``spans``, ``logs``): each Kafka
topic and each replay file carries one signal, and span- and log-derived series are named
``span.*`` / ``log.*`` by :mod:`aiops.ingest.aggregate`. The tracker runs once per interval of
event time on arrays the detector bank already keeps (points seen, recent level, recent
spread), so its cost is a few numpy passes over the series per interval and nothing per point.

- **new**: series first seen during the last ``window`` intervals;
- **vanished**: series that went ``window`` intervals without a point, counted for the next
  ``window`` intervals (a renamed metric shows as many new plus many vanished series);
- **shift**: the share of a source's active series whose recent level (the bank's longest
  moving average) lies more than ``shift_z`` reference spreads from the series' own slow
  reference level (an EWMA over ``ref_intervals`` intervals, so a lasting change is
  eventually accepted as the new normal).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

SOURCES = ("metrics", "spans", "logs")
_REL_FLOOR = 1e-3  # a constant series' spread counts as this share of its level


def source_of(key: str) -> int:
    """Index into :data:`SOURCES` of a series key ``service/metric{attrs}``."""
    metric = key.split("/", 1)[-1]
    return 1 if metric.startswith("span.") else 2 if metric.startswith("log.") else 0


@dataclass(frozen=True)
class SourceDrift:
    active: int  # series with a point in the last interval
    new: int  # first seen in the last `window` intervals
    vanished: int  # silent for `window` intervals, within the last `window` intervals
    shift: float  # share of judged active series whose level left their reference band
    warm: bool  # the source has been seen for more than `window` intervals (new series mean something)


class DriftTracker:
    def __init__(self, interval_s: float = 60.0, window: int = 10, ref_intervals: float = 30.0,
                 shift_z: float = 4.0, min_points: int = 10) -> None:  # fmt: skip
        self.interval_ns = int(interval_s * 1e9)
        self.window, self.shift_z, self.min_points = window, shift_z, min_points
        self._alpha = 1.0 / max(ref_intervals, 1.0)
        self.reset()

    def reset(self) -> None:
        self._next_ns = 0
        self._ticks = 0
        self._born = np.full(len(SOURCES), -1)  # tick a source was first seen at
        self._new: deque[np.ndarray] = deque(maxlen=self.window)
        self._src = np.zeros(0, dtype=np.int8)
        self._last_n = np.zeros(0, dtype=np.int64)
        self._idle = np.zeros(0, dtype=np.int32)
        self._ref_level = np.zeros(0)
        self._ref_spread = np.zeros(0)
        self._has_ref = np.zeros(0, dtype=bool)
        self.sources: dict[str, SourceDrift] = {}

    def due(self, watermark_ns: int) -> bool:
        """Whether event time has moved a whole interval since the last tick."""
        return watermark_ns >= self._next_ns

    def tick(self, watermark_ns: int, keys: list[str], n: np.ndarray, level: np.ndarray, spread: np.ndarray) -> None:
        """One interval: ``n``, ``level``, ``spread`` per series id (see :meth:`DetectorBank.recent`)."""
        size, old = len(n), len(self._src)
        if size < old:  # the pipeline restored other state: start over
            self.reset()
            old = 0
        self._next_ns = watermark_ns + self.interval_ns
        self._grow(size, keys)
        born = np.bincount(self._src[old:size], minlength=len(SOURCES))
        self._new.append(born)
        first = (self._born < 0) & (born > 0)
        self._born[first] = self._ticks

        src = self._src
        active = n > self._last_n
        self._last_n = n.astype(np.int64)
        self._idle = np.where(active, 0, self._idle + 1).astype(np.int32)
        vanished = (self._idle >= self.window) & (self._idle < 2 * self.window)
        warm = active & (n >= self.min_points) & np.isfinite(level) & np.isfinite(spread)
        judged = warm & self._has_ref
        scale = np.maximum(self._ref_spread, _REL_FLOOR * np.abs(self._ref_level) + 1e-12)
        shifted = judged & (np.abs(level - self._ref_level) > self.shift_z * scale)
        a = np.where(self._has_ref, self._alpha, 1.0) * warm
        self._ref_level += a * (np.where(warm, level, 0.0) - self._ref_level)
        self._ref_spread += a * (np.where(warm, spread, 0.0) - self._ref_spread)
        self._has_ref |= warm

        def per_source(mask: np.ndarray) -> np.ndarray:
            return np.bincount(src, weights=mask, minlength=len(SOURCES))

        counts = [per_source(m) for m in (active, vanished, judged, shifted)]
        new = np.sum(self._new, axis=0)
        active_n, vanished_n, judged_n, shifted_n = counts
        self.sources = {
            name: SourceDrift(int(active_n[i]), int(new[i]), int(vanished_n[i]),
                              float(shifted_n[i] / judged_n[i]) if judged_n[i] else 0.0,
                              self._ticks - int(self._born[i]) >= self.window)
            for i, name in enumerate(SOURCES) if self._born[i] >= 0
        }  # fmt: skip
        self._ticks += 1

    def _grow(self, size: int, keys: list[str]) -> None:
        old = len(self._src)
        if size == old:
            return
        extra = size - old
        self._src = np.concatenate([self._src, np.fromiter((source_of(k) for k in keys[old:size]), np.int8, extra)])
        self._last_n = np.concatenate([self._last_n, np.zeros(extra, dtype=np.int64)])
        self._idle = np.concatenate([self._idle, np.zeros(extra, dtype=np.int32)])
        self._ref_level = np.concatenate([self._ref_level, np.zeros(extra)])
        self._ref_spread = np.concatenate([self._ref_spread, np.zeros(extra)])
        self._has_ref = np.concatenate([self._has_ref, np.zeros(extra, dtype=bool)])
