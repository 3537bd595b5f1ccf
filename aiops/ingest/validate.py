"""Point-level validation: what may reach a detector, and why the rest may not.

A decoded point is refused (and dead-lettered with its reason) when its value is NaN/Inf or so
large that squaring it overflows float64, when its timestamp is missing, before 2000, ahead of
the wall clock, or far behind the stream's watermark, or when its series already holds a point
at or after its time (a duplicate, or out of order). Keeping per-series order here is what lets
an at-least-once consumer replay a tail without teaching the detectors anything twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from aiops.ingest.records import Decoded, HistogramPoint, MetricBatch, Reject, Span, row_json

MIN_TS_NS = 946_684_800 * 10**9  # 2000-01-01: nothing older is live telemetry


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    max_abs_value: float = 1e100  # squares of larger values overflow detector arithmetic
    max_future_s: float = 300.0  # clock skew allowed ahead of the reference clock
    max_lateness_s: float = 3600.0  # how far behind the watermark a point may arrive
    max_span_s: float = 3600.0  # longer spans would hold event-time windows open (and are rare)


class Validator:
    """Splits decoded rows into accepted and rejected, keeping the state that needs.

    ``now_ns`` is the reference clock for "in the future": the wall clock in service mode and in
    replay of recorded data, the simulator's clock when it runs in accelerated time.
    """

    def __init__(self, policy: ValidationPolicy | None = None, now_ns: Callable[[], int] = time.time_ns) -> None:
        self.policy = policy or ValidationPolicy()
        self.now_ns = now_ns
        self.watermark = 0  # max accepted event time over all sources, ns
        self._source_wm: dict[str, int] = {}  # per source (Kafka partition, file): max accepted time
        self._last_ts: dict[str, int] = {}  # per raw series key: last accepted timestamp

    def validate(self, decoded: Decoded, source: str, offset: int) -> Decoded:
        """Return ``decoded`` with bad points moved into ``rejects``."""
        # Lateness is judged per source: partitions consumed unevenly are not late, only disordered ones.
        lo = max(MIN_TS_NS, self._source_wm.get(source, 0) - int(self.policy.max_lateness_s * 1e9))
        hi = self.now_ns() + int(self.policy.max_future_s * 1e9)
        decoded.metrics = self._metrics(decoded.metrics, lo, hi, decoded.rejects, source, offset)
        decoded.histograms = [h for h in decoded.histograms if self._histogram(h, lo, hi, decoded.rejects, source, offset)]
        newest = int(decoded.metrics.ts.max()) if len(decoded.metrics) else 0
        newest = max([newest] + [h.ts for h in decoded.histograms])
        for name in ("logs", "spans", "changes"):
            rows = getattr(decoded, name)
            kept = []
            for r in rows:
                ts = r.start_ts if name == "spans" else r.ts
                why = _time_reason(ts, lo, hi) or (self._span_reason(r, hi) if name == "spans" else None)
                if why is None:
                    kept.append(r)
                    newest = max(newest, r.end_ts if name == "spans" else ts)
                else:
                    decoded.rejects.append(Reject(source, offset, why, row_json(r)))
            setattr(decoded, name, kept)
        if newest > self._source_wm.get(source, 0):
            self._source_wm[source] = newest
            self.watermark = max(self.watermark, newest)
        return decoded

    def source_watermark(self, source: str) -> int:
        """The newest event time accepted from ``source`` (0: nothing yet)."""
        return self._source_wm.get(source, 0)

    def _metrics(self, batch: MetricBatch, lo: int, hi: int, rejects: list[Reject], source: str, offset: int) -> MetricBatch:
        if not len(batch):
            return batch
        v, ts = batch.values, batch.ts
        finite = np.isfinite(v)
        ok = finite & (np.abs(np.where(finite, v, 0.0)) <= self.policy.max_abs_value) & (ts >= lo) & (ts <= hi)
        last = self._last_ts
        for i in np.flatnonzero(ok):  # per-series order needs the previous accepted point
            key, t = batch.keys[i], int(ts[i])
            prev = last.get(key, -1)
            if t > prev:
                last[key] = t
            else:
                ok[i] = False
        for i in np.flatnonzero(~ok):
            rejects.append(Reject(source, offset, self._point_reason(batch, i, lo, hi), batch.row_json(i)))
        return batch if ok.all() else batch.take(ok)

    def _point_reason(self, batch: MetricBatch, i: int, lo: int, hi: int) -> str:
        v = float(batch.values[i])
        if not np.isfinite(v):
            return f"non-finite value {v!r}"
        if abs(v) > self.policy.max_abs_value:
            return f"value {v!r} out of range (|value| > {self.policy.max_abs_value:g})"
        why = _time_reason(int(batch.ts[i]), lo, hi)
        if why is not None:
            return why
        prev = self._last_ts[batch.keys[i]]
        return _order_reason(int(batch.ts[i]), prev)

    def _histogram(self, h: HistogramPoint, lo: int, hi: int, rejects: list[Reject], source: str, offset: int) -> bool:
        why = _time_reason(h.ts, lo, hi)
        if why is None and h.sum is not None and not abs(h.sum) <= self.policy.max_abs_value:
            why = f"histogram sum {h.sum!r} is non-finite or out of range"
        if why is None:
            prev = self._last_ts.get(h.key, -1)
            if h.ts <= prev:
                why = _order_reason(h.ts, prev)
        if why is not None:
            rejects.append(Reject(source, offset, why, row_json(h)))
            return False
        self._last_ts[h.key] = h.ts
        return True

    def _span_reason(self, span: Span, hi: int) -> str | None:
        if span.end_ts > hi:
            return "span end time in the future"
        if span.end_ts - span.start_ts > self.policy.max_span_s * 1e9:
            return f"span longer than {self.policy.max_span_s:g} s"
        return None

    def state(self) -> dict[str, Any]:
        return {"watermark": self.watermark, "source_wm": self._source_wm, "last_ts": self._last_ts}

    def load_state(self, state: dict[str, Any]) -> None:
        self.watermark = int(state["watermark"])
        self._source_wm = {k: int(v) for k, v in state["source_wm"].items()}
        self._last_ts = {k: int(v) for k, v in state["last_ts"].items()}


def _time_reason(ts: int, lo: int, hi: int) -> str | None:
    if ts <= 0:
        return "missing timestamp"
    if ts < MIN_TS_NS:
        return "timestamp before 2000-01-01"
    if ts > hi:
        return "timestamp in the future"
    if ts < lo:
        return "timestamp too far behind the stream (late)"
    return None



def _order_reason(ts: int, prev: int) -> str:
    if ts == prev:
        return "duplicate point"
    return "out-of-order or duplicate point (older than the series' last accepted point)"
