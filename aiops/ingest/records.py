"""Typed records that leave the decoders.

Metric points travel as columns (one numpy array per field) because per-point Python work sets
the pace of the whole engine; logs, spans and changes are far fewer and stay as small slotted
dataclasses. Every decoder returns a :class:`Decoded`, rows plus rejects, never raising for bad
input.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any, Literal

import numpy as np

Signal = Literal["metrics", "logs", "spans", "findings"]  # findings: detect processes' output (aiops.scale)
WireFormat = Literal["otlp_json", "otlp_proto", "native"]
WIRE_FORMATS: tuple[WireFormat, ...] = ("otlp_json", "otlp_proto", "native")


@dataclass(slots=True)
class Message:
    """One transport message: a Kafka record or one line of a replay file."""

    signal: Signal
    format: WireFormat
    payload: bytes
    source: str  # "kafka:otlp_metrics/2", "file:/path/metrics.jsonl", "sim"
    offset: int  # Kafka offset or 1-based line number


class PointKind(IntEnum):
    """How a metric value must be read before a detector may see it."""

    GAUGE = 0
    COUNTER_CUMULATIVE = 1  # monotonic running total: the detector sees its rate
    COUNTER_DELTA = 2  # monotonic increment since start_ts: the detector sees its rate


@dataclass(slots=True)
class Reject:
    """A record or point that did not make it in, with why; one dead-letter line."""

    source: str
    offset: int
    reason: str
    raw: bytes

    def to_json(self) -> str:
        try:
            raw: Any = self.raw.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            raw, encoding = self.raw.hex(), "hex"
        return json.dumps(
            {
                "source": self.source,
                "offset_or_line": self.offset,
                "reason": self.reason,
                "raw": raw,
                "raw_encoding": encoding,
            },
            separators=(",", ":"),
        )


class MetricColumns:
    """Append-only column builder for metric points, frozen into numpy arrays by :meth:`freeze`."""

    __slots__ = ("keys", "services", "ts", "values", "kinds", "start_ts")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.services: list[str] = []
        self.ts: list[int] = []
        self.values: list[float] = []
        self.kinds: list[int] = []
        self.start_ts: list[int] = []

    def append(self, key: str, service: str, ts: int, value: float, kind: int, start_ts: int) -> None:
        self.keys.append(key)
        self.services.append(service)
        self.ts.append(ts)
        self.values.append(value)
        self.kinds.append(kind)
        self.start_ts.append(start_ts)

    def freeze(self) -> MetricBatch:
        return MetricBatch(
            keys=self.keys,
            services=self.services,
            ts=np.asarray(self.ts, dtype=np.int64),
            values=np.asarray(self.values, dtype=np.float64),
            kinds=np.asarray(self.kinds, dtype=np.int8),
            start_ts=np.asarray(self.start_ts, dtype=np.int64),
        )


@dataclass(slots=True)
class MetricBatch:
    """Columnar metric points; row i is (keys[i], services[i], ts[i], values[i], kinds[i])."""

    keys: list[str]
    services: list[str]
    ts: np.ndarray
    values: np.ndarray
    kinds: np.ndarray
    start_ts: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, idx: np.ndarray) -> MetricBatch:
        """Rows ``idx`` (an index or boolean array) as a new batch."""
        rows = np.flatnonzero(idx) if idx.dtype == np.bool_ else idx
        return MetricBatch(
            keys=[self.keys[i] for i in rows],
            services=[self.services[i] for i in rows],
            ts=self.ts[rows],
            values=self.values[rows],
            kinds=self.kinds[rows],
            start_ts=self.start_ts[rows],
        )

    def row_json(self, i: int) -> bytes:
        """One point as JSON, the ``raw`` of a point-level dead-letter line."""
        return json.dumps(
            {
                "series": self.keys[i],
                "service": self.services[i],
                "ts_unix_nano": int(self.ts[i]),
                "value": repr(float(self.values[i])),
            }
        ).encode()

    @staticmethod
    def concat(batches: list[MetricBatch]) -> MetricBatch:
        batches = [b for b in batches if len(b)]
        if not batches:
            return MetricColumns().freeze()
        if len(batches) == 1:
            return batches[0]
        return MetricBatch(
            keys=[k for b in batches for k in b.keys],
            services=[s for b in batches for s in b.services],
            ts=np.concatenate([b.ts for b in batches]),
            values=np.concatenate([b.values for b in batches]),
            kinds=np.concatenate([b.kinds for b in batches]),
            start_ts=np.concatenate([b.start_ts for b in batches]),
        )


@dataclass(slots=True)
class HistogramPoint:
    """An explicit-bucket histogram point; :mod:`aiops.ingest.derive` turns it into series."""

    key: str  # series key of the histogram itself, without a suffix
    service: str
    ts: int
    start_ts: int
    count: int
    sum: float | None
    bounds: tuple[float, ...]
    bucket_counts: tuple[int, ...]
    cumulative: bool


@dataclass(slots=True)
class LogRecord:
    ts: int
    service: str
    severity_number: int
    severity_text: str
    body: str
    attributes: dict[str, Any]
    trace_id: str = ""
    span_id: str = ""


@dataclass(slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    service: str
    name: str
    kind: int  # OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer
    start_ts: int
    end_ts: int
    error: bool
    attributes: dict[str, Any]

    @property
    def duration_s(self) -> float:
        return (self.end_ts - self.start_ts) / 1e9


@dataclass(slots=True)
class ChangeEvent:
    """A deployment or configuration change, sent as an OTLP log record with ``event.name``."""

    ts: int
    service: str
    kind: str  # "deployment" | "config_change"
    version: str
    attributes: dict[str, Any]


@dataclass(slots=True)
class Decoded:
    """What a decoder made of one message: typed rows and the parts it refused."""

    metrics: MetricBatch = field(default_factory=lambda: MetricColumns().freeze())
    histograms: list[HistogramPoint] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    changes: list[ChangeEvent] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    no_value_points: int = 0  # OTLP points flagged "no recorded value" (staleness markers)


def series_key(service: str, name: str, attributes: dict[str, Any]) -> str:
    """The identity of a series: service, metric name and sorted attributes, in one string.

    >>> series_key("cart", "http.server.request.count", {"b": 2, "a": "x"})
    'cart/http.server.request.count{a=x,b=2}'
    """
    if not attributes:
        return f"{service}/{name}"
    labels = ",".join(f"{k}={attributes[k]}" for k in sorted(attributes))
    return f"{service}/{name}{{{labels}}}"


def row_json(row: Any) -> bytes:
    """A log/span/change/histogram row as JSON: the ``raw`` of its dead-letter line."""
    return json.dumps(asdict(row), default=str).encode()
