"""Per-second rates of cumulative counters over sliding wall-clock windows.

The pipeline already keeps running totals (messages, points, rejects); a rate is the
difference of two totals over the time between them. Samples are merged to one per
``resolution_s``, so memory stays bounded by window / resolution whatever the batch rate.
"""

from __future__ import annotations

from collections import deque


class Rates:
    def __init__(self, windows_s: tuple[float, ...] = (10.0, 60.0), resolution_s: float = 1.0) -> None:
        self.windows_s = windows_s
        self.resolution_s = resolution_s
        self._samples: deque[tuple[float, dict[str, float]]] = deque()

    def add(self, t: float, totals: dict[str, float]) -> None:
        """Record running totals as of time ``t`` (monotonic seconds)."""
        s = self._samples
        if len(s) >= 2 and t - s[-2][0] < self.resolution_s:
            s[-1] = (t, totals)  # same resolution step: keep the newest totals only
        else:
            s.append((t, totals))
        horizon = t - max(self.windows_s)
        while len(s) > 2 and s[1][0] <= horizon:  # keep one sample at or before the longest window
            s.popleft()

    def rates(self, now: float, window_s: float) -> dict[str, float]:
        """Per-second increase of each total over ``[now - window_s, now]`` (0 before two samples).

        The totals are unchanged since the last sample, so a stalled stream decays to 0.
        """
        s = self._samples
        if len(s) < 2:
            return {}
        start = now - window_s
        base = s[0]
        for sample in s:  # the newest sample at or before the window's start, else the oldest
            if sample[0] > start:
                break
            base = sample
        t0, first = base
        last = s[-1][1]
        dt = max(now - t0, 1e-9)
        return {k: max(v - first.get(k, 0.0), 0.0) / dt for k, v in last.items()}
