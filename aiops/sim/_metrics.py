"""Per-service cumulative metric state and its ``ExportMetricsServiceRequest`` message.

Counters and histograms are cumulative from the process start, as an OTel SDK exports them; a
restart (after a crash) resets them with a new ``startTimeUnixNano``, which decoders must handle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._otlp import SCOPE, TEMPORALITY_CUMULATIVE, dumps, kv_int, kv_str, resource

__all__ = ["BOUNDS", "QUANTILES", "MetricState"]

BOUNDS: list[float] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                       7.5, 10.0]
_BOUNDS_ARR = np.asarray(BOUNDS)
QUANTILES: list[float] = [0.5, 0.9, 0.99]
_ATTR_OK = [kv_int("http.response.status_code", 200)]
_ATTR_ERR = [kv_int("http.response.status_code", 500)]


class MetricState:
    """Cumulative request counts, duration histogram and (optionally) client summaries."""

    def __init__(self, start_unix_nano: int, with_summary: bool = False) -> None:
        self.with_summary = with_summary
        self.reset(start_unix_nano)

    def reset(self, start_unix_nano: int) -> None:
        """Start counting again, as a restarted process does."""
        self.start_ns = start_unix_nano
        self.ok = 0
        self.errors = 0
        self.buckets = np.zeros(len(BOUNDS) + 1, dtype=np.int64)
        self.sum = 0.0
        self.count = 0
        # callee -> [count, sum, quantile values of the latest window]
        self.rpc: dict[str, list[Any]] = {}

    def record(self, lat: np.ndarray, err: np.ndarray, client: dict[str, np.ndarray]) -> None:
        """Add one window of sampled requests."""
        n = int(lat.size)
        n_err = int(err.sum())
        self.ok += n - n_err
        self.errors += n_err
        self.count += n
        self.sum += float(lat.sum())
        self.buckets += np.bincount(
            np.searchsorted(_BOUNDS_ARR, lat, side="left"), minlength=len(BOUNDS) + 1
        )
        if self.with_summary:
            for callee, c in client.items():
                entry = self.rpc.setdefault(callee, [0, 0.0, None])
                entry[0] += int(c.size)
                entry[1] += float(c.sum())
                if c.size:
                    entry[2] = [round(float(v), 6) for v in np.quantile(c, QUANTILES)]

    def message(
        self, service: str, version: str, ts_ns: int, cpu: float, memory: int, limit: int
    ) -> bytes:
        """One ``ExportMetricsServiceRequest`` for this service at ``ts_ns``."""
        t = str(ts_ns)
        st = str(self.start_ns)
        count_points = [
            {"attributes": _ATTR_OK, "startTimeUnixNano": st, "timeUnixNano": t,
             "asInt": str(self.ok)}
        ]
        if self.errors:
            count_points.append(
                {"attributes": _ATTR_ERR, "startTimeUnixNano": st, "timeUnixNano": t,
                 "asInt": str(self.errors)}
            )
        metrics: list[dict[str, Any]] = [
            {"name": "process.cpu.utilization", "unit": "1",
             "gauge": {"dataPoints": [{"timeUnixNano": t, "asDouble": round(cpu, 4)}]}},
            {"name": "process.memory.usage", "unit": "By",
             "gauge": {"dataPoints": [{"timeUnixNano": t, "asInt": str(memory)}]}},
            {"name": "process.memory.limit", "unit": "By",
             "gauge": {"dataPoints": [{"timeUnixNano": t, "asInt": str(limit)}]}},
            {"name": "http.server.request.count", "unit": "{request}",
             "sum": {"dataPoints": count_points,
                     "aggregationTemporality": TEMPORALITY_CUMULATIVE, "isMonotonic": True}},
            {"name": "http.server.request.duration", "unit": "s",
             "histogram": {"dataPoints": [
                 {"startTimeUnixNano": st, "timeUnixNano": t, "count": str(self.count),
                  "sum": round(self.sum, 6),
                  "bucketCounts": [str(c) for c in self.buckets.tolist()],
                  "explicitBounds": BOUNDS}],
                 "aggregationTemporality": TEMPORALITY_CUMULATIVE}},
        ]
        if self.with_summary:
            points = [
                {"attributes": [kv_str("peer.service", callee)], "startTimeUnixNano": st,
                 "timeUnixNano": t, "count": str(c), "sum": round(s, 6),
                 "quantileValues": [{"quantile": q, "value": v} for q, v in zip(QUANTILES, qv)]}
                for callee, (c, s, qv) in self.rpc.items() if qv is not None
            ]
            if points:
                metrics.append({"name": "rpc.client.duration", "unit": "s",
                                "summary": {"dataPoints": points}})
        return dumps({"resourceMetrics": [{
            "resource": resource(service, version),
            "scopeMetrics": [{"scope": SCOPE, "metrics": metrics}],
        }]})
