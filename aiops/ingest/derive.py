"""Counters and histograms become the series a detector can read.

A cumulative counter's level says nothing; its rate does. A histogram becomes a request rate,
a mean and p50/p90/p99 over each scrape interval, computed from bucket deltas as Prometheus'
``histogram_quantile`` does (linear interpolation inside the bucket). Counter resets (a new
``start_time_unix_nano`` or a smaller total) re-baseline instead of producing a negative rate.
A usage gauge scraped beside its limit (``process.memory.usage`` and ``process.memory.limit``)
also becomes a utilization (``process.memory.utilization``), since "90 % of the limit" is the
line that matters and neither series says it alone. Likewise request-count rates split by
``http.response.status_code`` (or ``rpc.grpc.status_code``) add up to one error ratio per
service and metric (``http.server.request.count:error_ratio``): the share of 5xx (gRPC: not OK).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from aiops.ingest.records import HistogramPoint, MetricBatch, MetricColumns, PointKind

log = logging.getLogger(__name__)
QUANTILES = (0.5, 0.9, 0.99)


def with_suffix(key: str, suffix: str) -> str:
    """``svc/name{a=b}`` + ``:rate`` → ``svc/name:rate{a=b}``."""
    brace = key.find("{")
    return f"{key}{suffix}" if brace < 0 else f"{key[:brace]}{suffix}{key[brace:]}"


def bucket_quantile(q: float, bounds: tuple[float, ...], counts: np.ndarray) -> float:
    """The q-quantile of an explicit-bucket histogram (counts has len(bounds) + 1 entries).

    >>> bucket_quantile(0.5, (1.0, 2.0), np.array([0, 10, 0]))
    1.5
    """
    total = counts.sum()
    rank = q * total
    cum = np.cumsum(counts)
    b = int(np.searchsorted(cum, rank, side="left"))
    if b >= len(bounds):  # the +Inf bucket: the largest finite bound is all we know
        return float(bounds[-1]) if bounds else float("nan")
    lower = 0.0 if b == 0 else bounds[b - 1]
    upper = bounds[b]
    if b == 0 and upper <= 0:
        return float(upper)
    below = cum[b - 1] if b > 0 else 0
    inside = counts[b]
    return float(lower + (upper - lower) * ((rank - below) / inside if inside else 0.0))


def _split(key: str) -> tuple[str, str]:
    brace = key.find("{")
    return (key, "") if brace < 0 else (key[:brace], key[brace:])


def utilization(batch: MetricBatch) -> MetricBatch:
    """``X.usage / X.limit`` as ``X.utilization`` for pairs at the same time and attributes."""
    limits: dict[tuple[str, int], float] = {}
    for i, key in enumerate(batch.keys):
        if ".limit" in key:
            name, attrs = _split(key)
            if name.endswith(".limit") and batch.values[i] > 0:
                limits[(name[:-6] + attrs, int(batch.ts[i]))] = float(batch.values[i])
    out = MetricColumns()
    if limits:
        present = set(batch.keys)
        for i, key in enumerate(batch.keys):
            name, attrs = _split(key)
            if not name.endswith(".usage"):
                continue
            limit = limits.get((name[:-6] + attrs, int(batch.ts[i])))
            target = f"{name[:-6]}.utilization{attrs}"
            if limit is not None and target not in present:
                out.append(target, batch.services[i], int(batch.ts[i]), float(batch.values[i]) / limit, PointKind.GAUGE, 0)
    return out.freeze()


_STATUS = (("http.response.status_code=", lambda c: c >= 500), ("rpc.grpc.status_code=", lambda c: c != 0))


def error_ratio(rates: MetricBatch) -> MetricBatch:
    """Per service, metric and time: failed / all requests, from rates split by a status code."""
    sums: dict[tuple[str, str, int], list[float]] = {}
    for i, key in enumerate(rates.keys):
        name, attrs = _split(key)
        if not name.endswith(":rate") or "status_code=" not in attrs:
            continue
        for label, failed in _STATUS:
            at = attrs.find(label)
            if at >= 0:
                code = attrs[at + len(label):].split(",", 1)[0].rstrip("}")
                acc = sums.setdefault((rates.services[i], name[:-5], int(rates.ts[i])), [0.0, 0.0])
                value = float(rates.values[i])
                acc[0] += value
                if code.lstrip("-").isdigit() and failed(int(code)):
                    acc[1] += value
                break
    out = MetricColumns()
    for (service, name, ts), (total, bad) in sums.items():
        if total > 0:
            out.append(f"{name}:error_ratio", service, ts, bad / total, PointKind.GAUGE, 0)
    return out.freeze()


class Deriver:
    """Keeps the previous cumulative value of each counter and histogram series."""

    def __init__(self) -> None:
        self._counters: dict[str, tuple[int, float, int]] = {}  # key -> (ts, total, start_ts)
        self._histograms: dict[str, tuple[int, int, int, float, tuple[int, ...]]] = {}

    def derive(self, batch: MetricBatch, histograms: list[HistogramPoint]) -> MetricBatch:
        """Gauges pass through; counters and histograms turn into rate/percentile gauges."""
        kinds = batch.kinds
        gauges = kinds == PointKind.GAUGE
        if gauges.all() and not histograms:
            return MetricBatch.concat([batch, utilization(batch)])
        out = MetricColumns()
        for i in np.flatnonzero(~gauges):
            self._counter(batch.keys[i], batch.services[i], int(batch.ts[i]), float(batch.values[i]),
                          int(kinds[i]), int(batch.start_ts[i]), out)  # fmt: skip
        for h in histograms:
            self._histogram(h, out)
        derived = out.freeze()
        finite = np.isfinite(derived.values)
        if not finite.all():  # decoders refuse what could cause this; the detectors must never see it
            log.warning("dropped %d non-finite derived values", int((~finite).sum()))
            derived = derived.take(finite)
        own = batch.take(gauges)
        return MetricBatch.concat([own, derived, utilization(own), error_ratio(derived)])

    def _counter(self, key: str, service: str, ts: int, total: float, kind: int, start: int, out: MetricColumns) -> None:
        prev = self._counters.get(key)
        self._counters[key] = (ts, total, start)
        if kind == PointKind.COUNTER_DELTA:
            since = start if 0 < start < ts else (prev[0] if prev else 0)
            if since:
                out.append(with_suffix(key, ":rate"), service, ts, total / ((ts - since) / 1e9), PointKind.GAUGE, 0)
            return
        if prev is None:
            return  # the first total of a counter has no rate yet
        p_ts, p_total, p_start = prev
        if start != p_start or total < p_total:  # reset: the total restarted from zero at `start`
            if not 0 < start < ts:
                return
            p_ts, p_total = start, 0.0
        out.append(with_suffix(key, ":rate"), service, ts, (total - p_total) / ((ts - p_ts) / 1e9), PointKind.GAUGE, 0)

    def _histogram(self, h: HistogramPoint, out: MetricColumns) -> None:
        counts = np.asarray(h.bucket_counts, dtype=np.int64)
        total_sum = h.sum if h.sum is not None else float("nan")
        if h.cumulative:
            prev = self._histograms.get(h.key)
            self._histograms[h.key] = (h.ts, h.start_ts, h.count, total_sum, h.bucket_counts)
            if prev is None:
                return
            p_ts, p_start, p_count, p_sum, p_counts = prev
            if h.start_ts != p_start or h.count < p_count or len(p_counts) != len(counts):
                if not 0 < h.start_ts < h.ts:
                    return
                p_ts, p_count, p_sum, p_counts = h.start_ts, 0, 0.0, (0,) * len(counts)
            d_counts = counts - np.asarray(p_counts, dtype=np.int64)
            d_count, d_sum, interval = h.count - p_count, total_sum - p_sum, (h.ts - p_ts) / 1e9
        else:
            d_counts, d_count, d_sum = counts, h.count, total_sum
            interval = (h.ts - h.start_ts) / 1e9 if 0 < h.start_ts < h.ts else 0.0
        if interval > 0:
            out.append(with_suffix(h.key, ":rate"), h.service, h.ts, d_count / interval, PointKind.GAUGE, 0)
        if d_count <= 0:
            return  # no observations this interval: latency is undefined, not zero
        if np.isfinite(d_sum):
            out.append(with_suffix(h.key, ":mean"), h.service, h.ts, d_sum / d_count, PointKind.GAUGE, 0)
        if len(d_counts) and d_counts.sum() > 0 and (d_counts >= 0).all():
            for q in QUANTILES:
                value = bucket_quantile(q, h.bounds, d_counts)
                out.append(with_suffix(h.key, f":p{round(q * 100)}"), h.service, h.ts, value, PointKind.GAUGE, 0)

    def state(self) -> dict[str, Any]:
        return {"counters": self._counters, "histograms": self._histograms}

    def load_state(self, state: dict[str, Any]) -> None:
        self._counters = {k: (int(a), float(b), int(c)) for k, (a, b, c) in state["counters"].items()}
        self._histograms = {
            k: (int(a), int(b), int(c), float(d), tuple(int(x) for x in e))
            for k, (a, b, c, d, e) in state["histograms"].items()
        }
