"""OTLP decoding, JSON and protobuf, through one walker.

The Collector's kafka exporter writes one ``Export*ServiceRequest`` per message, as protobuf
(``otlp_proto``, its default) or in the protobuf JSON mapping (``otlp_json``). The JSON side is
decoded into msgspec Structs whose attribute names are the protobuf field names, so the walker
below reads both; the few places where they differ (oneofs, ids, enums) sit behind ``_Access``.

Bad parts are refused at the smallest unit that still carries meaning: the whole message when it
cannot be parsed, one resource block when it names no ``service.name``, one metric or point when
its fields are malformed. Non-finite values, bad timestamps and duplicates are the validator's
business (:mod:`aiops.ingest.validate`), not the decoder's.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from google.protobuf.message import DecodeError as ProtoDecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from aiops.ingest import _otlp_json_schema as schema
from aiops.ingest.records import (
    ChangeEvent,
    Decoded,
    HistogramPoint,
    LogRecord,
    Message,
    MetricColumns,
    PointKind,
    Reject,
    Span,
    series_key,
)

CHANGE_EVENTS = frozenset({"deployment", "config_change"})
# protobuf JSON may spell enums by name; take every name from the protocol's own descriptors
_ENUMS = {
    name: number
    for enum in (trace_pb2.Span.SpanKind, trace_pb2.Status.StatusCode, metrics_pb2.AggregationTemporality,
                 logs_pb2.SeverityNumber)  # fmt: skip
    for name, number in enum.items()
}
_MAX_SEVERITY = 24
_SEVERITY_TEXT = {1: "TRACE", 5: "DEBUG", 9: "INFO", 13: "WARN", 17: "ERROR", 21: "FATAL"}
_TEMPORALITY_DELTA, _TEMPORALITY_CUMULATIVE = 1, 2
_STATUS_ERROR = 2
_NO_RECORDED_VALUE = 1  # DataPointFlags bit
_HEX = frozenset("0123456789abcdefABCDEF")


class _Bad(Exception):
    """A part of a message is malformed; caught by the walker and turned into a Reject."""


_U63 = 1 << 63  # timestamps and counts must fit the int64 columns they land in


def _time(value: int | str, what: str = "timestamp") -> int:
    t = int(value)
    if not 0 <= t < _U63:
        raise _Bad(f"{what} {t} out of range")
    return t


def _count(value: int | str) -> int:
    c = int(value)
    if not 0 <= c < _U63:
        raise _Bad(f"count {c} out of range")
    return c


def _enum(value: int | str) -> int:
    if isinstance(value, int):
        return value
    if value in _ENUMS:
        return _ENUMS[value]
    try:
        return int(value)
    except ValueError:
        raise _Bad(f"unknown enum value {value!r}") from None


class _Access:
    """The places where a decoded JSON Struct and a protobuf message differ."""

    def __init__(
        self,
        which: Callable[[Any, str, tuple[str, ...]], str | None],
        has: Callable[[Any, str], bool],
        hex_id: Callable[[Any], str],
        encode: Callable[[Any], bytes],
    ) -> None:
        self.which = which
        self.has = has  # is an optional field set (protobuf scalars default to 0, JSON to None)
        self.hex_id = hex_id
        self.encode = encode

    def any_value(self, v: Any) -> Any:
        if v is None:
            return None
        name = self.which(v, "value", _ANY_FIELDS)
        if name is None:
            return None
        x = getattr(v, name)
        if name == "int_value":
            return int(x)
        if name == "double_value":
            return float(x)
        if name == "bytes_value":
            return x if isinstance(x, str) else base64.b64encode(x).decode()
        if name == "array_value":
            return [self.any_value(i) for i in x.values]
        if name == "kvlist_value":
            return self.attributes(x.values)
        return x

    def attributes(self, kvs: Iterable[Any]) -> dict[str, Any]:
        return {kv.key: self.any_value(kv.value) for kv in kvs}


_ANY_FIELDS = ("string_value", "bool_value", "int_value", "double_value", "bytes_value",
               "array_value", "kvlist_value")  # fmt: skip


def _json_which(msg: Any, _oneof: str, fields: tuple[str, ...]) -> str | None:
    for f in fields:
        if getattr(msg, f) is not None:
            return f
    return None


def _json_hex(s: str) -> str:
    if s and not (len(s) % 2 == 0 and _HEX.issuperset(s)):
        raise _Bad(f"id {s[:40]!r} is not hex")
    return s.lower()


_JSON = _Access(_json_which, lambda msg, f: getattr(msg, f) is not None, _json_hex, msgspec.json.encode)
_PROTO = _Access(
    lambda msg, oneof, _fields: msg.WhichOneof(oneof),
    lambda msg, f: msg.HasField(f),
    lambda b: b.hex(),
    lambda msg: msg.SerializeToString(),
)
_METRIC_FIELDS = ("gauge", "sum", "histogram", "summary", "exponential_histogram")
_NUMBER_FIELDS = ("as_double", "as_int")
_BLOCKS = {"metrics": "resource_metrics", "logs": "resource_logs", "spans": "resource_spans"}
_PROTO_TYPES = {
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
    "spans": ExportTraceServiceRequest,
}


def decode_otlp_json(msg: Message) -> Decoded:
    """Decode one ``otlp_json`` message; never raises for bad input."""
    try:
        request = schema.DECODERS[msg.signal].decode(msg.payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as e:
        # msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside a string
        return _refused(msg, f"invalid OTLP/JSON {msg.signal} request: {e}")
    return _walk(msg, request, _JSON)


def decode_otlp_proto(msg: Message) -> Decoded:
    """Decode one ``otlp_proto`` message; never raises for bad input."""
    try:
        request = _PROTO_TYPES[msg.signal].FromString(msg.payload)
    except (ProtoDecodeError, ValueError, RuntimeError) as e:
        return _refused(msg, f"invalid OTLP/protobuf {msg.signal} request: {e}")
    return _walk(msg, request, _PROTO)


def _refused(msg: Message, reason: str) -> Decoded:
    return Decoded(rejects=[Reject(msg.source, msg.offset, reason, msg.payload)])


def _walk(msg: Message, request: Any, acc: _Access) -> Decoded:
    out = Decoded()
    blocks = getattr(request, _BLOCKS[msg.signal])
    if not blocks:
        out.rejects.append(Reject(msg.source, msg.offset, "empty request: no resource data", msg.payload))
        return out
    columns = MetricColumns()
    for block in blocks:
        try:
            resource = acc.attributes(block.resource.attributes) if block.resource is not None else {}
        except (_Bad, ValueError, OverflowError) as e:
            out.rejects.append(Reject(msg.source, msg.offset, f"bad resource attributes: {e}", acc.encode(block)))
            continue
        service = resource.get("service.name")
        if not isinstance(service, str) or not service:
            out.rejects.append(
                Reject(msg.source, msg.offset, "resource has no service.name", acc.encode(block))
            )
            continue
        if msg.signal == "metrics":
            _walk_metrics(msg, block, service, acc, columns, out)
        elif msg.signal == "logs":
            _walk_logs(msg, block, service, resource, acc, out)
        else:
            _walk_spans(msg, block, service, acc, out)
    out.metrics = columns.freeze()
    return out


def _walk_metrics(msg: Message, rm: Any, service: str, acc: _Access, cols: MetricColumns, out: Decoded) -> None:
    for sm in rm.scope_metrics:
        for m in sm.metrics:
            kind = acc.which(m, "data", _METRIC_FIELDS)
            if not m.name or kind is None or kind == "exponential_histogram":
                why = ("metric has no name" if not m.name else
                       f"metric {m.name!r} has no data" if kind is None else
                       f"metric {m.name!r}: exponential histograms are not supported")  # fmt: skip
                out.rejects.append(Reject(msg.source, msg.offset, why, acc.encode(m)))
                continue
            data = getattr(m, kind)
            for dp in data.data_points:
                try:
                    if dp.flags & _NO_RECORDED_VALUE:
                        out.no_value_points += 1
                    elif kind == "histogram":
                        _histogram_point(m.name, service, data, dp, acc, out)
                    elif kind == "summary":
                        _summary_point(m.name, service, dp, acc, cols)
                    else:
                        _number_point(m.name, service, kind, data, dp, acc, cols)
                except (_Bad, ValueError, TypeError, OverflowError) as e:
                    reason = f"metric {m.name!r}: malformed data point: {e}"
                    out.rejects.append(Reject(msg.source, msg.offset, reason, acc.encode(dp)))


def _number_point(name: str, service: str, kind: str, data: Any, dp: Any, acc: _Access, cols: MetricColumns) -> None:
    which = acc.which(dp, "value", _NUMBER_FIELDS)
    if which is None:
        raise _Bad("no value")
    value = float(getattr(dp, which)) if which == "as_double" else float(int(getattr(dp, which)))
    point_kind = PointKind.GAUGE
    if kind == "sum" and data.is_monotonic:
        temporality = _enum(data.aggregation_temporality)
        point_kind = PointKind.COUNTER_DELTA if temporality == _TEMPORALITY_DELTA else PointKind.COUNTER_CUMULATIVE
    key = series_key(service, name, acc.attributes(dp.attributes))
    cols.append(key, service, _time(dp.time_unix_nano), value, point_kind, _time(dp.start_time_unix_nano, "start time"))


def _histogram_point(name: str, service: str, data: Any, dp: Any, acc: _Access, out: Decoded) -> None:
    bounds = tuple(float(b) for b in dp.explicit_bounds)
    counts = tuple(_count(c) for c in dp.bucket_counts)
    if counts and len(counts) != len(bounds) + 1:
        raise _Bad(f"{len(counts)} bucket counts for {len(bounds)} bounds")
    if not all(math.isfinite(b) for b in bounds):
        raise _Bad("explicit bounds must be finite")
    if any(b >= c for b, c in zip(bounds, bounds[1:], strict=False)):
        raise _Bad("explicit bounds are not increasing")
    out.histograms.append(
        HistogramPoint(
            key=series_key(service, name, acc.attributes(dp.attributes)),
            service=service,
            ts=_time(dp.time_unix_nano),
            start_ts=_time(dp.start_time_unix_nano, "start time"),
            count=_count(dp.count),
            sum=float(dp.sum) if acc.has(dp, "sum") else None,
            bounds=bounds,
            bucket_counts=counts,
            cumulative=_enum(data.aggregation_temporality) != _TEMPORALITY_DELTA,
        )
    )


def _summary_point(name: str, service: str, dp: Any, acc: _Access, cols: MetricColumns) -> None:
    """A summary becomes one gauge per quantile and a cumulative counter of observations."""
    attrs = acc.attributes(dp.attributes)
    ts, start = _time(dp.time_unix_nano), _time(dp.start_time_unix_nano, "start time")
    for q in dp.quantile_values:
        key = series_key(service, f"{name}:q{float(q.quantile):g}", attrs)
        cols.append(key, service, ts, float(q.value), PointKind.GAUGE, start)
    cols.append(series_key(service, f"{name}:count", attrs), service, ts, float(_count(dp.count)),
                PointKind.COUNTER_CUMULATIVE, start)  # fmt: skip


def _walk_logs(msg: Message, rl: Any, service: str, resource: dict[str, Any], acc: _Access, out: Decoded) -> None:
    for sl in rl.scope_logs:
        for lr in sl.log_records:
            try:
                attrs = acc.attributes(lr.attributes)
                ts = _time(lr.time_unix_nano) or _time(lr.observed_time_unix_nano)
                event = getattr(lr, "event_name", "") or attrs.get("event.name", "")
                if event in CHANGE_EVENTS:
                    version = attrs.get("service.version") or resource.get("service.version") or ""
                    out.changes.append(ChangeEvent(ts, service, event, str(version), attrs))
                    continue
                severity = _enum(lr.severity_number)
                if not 0 <= severity <= _MAX_SEVERITY:
                    raise _Bad(f"severity number {severity} outside 0..{_MAX_SEVERITY}")
                body = acc.any_value(lr.body)
                out.logs.append(
                    LogRecord(
                        ts=ts,
                        service=service,
                        severity_number=severity,
                        severity_text=lr.severity_text or _SEVERITY_TEXT.get(severity - (severity - 1) % 4, ""),
                        body=body if isinstance(body, str) else ("" if body is None else str(body)),
                        attributes=attrs,
                        trace_id=acc.hex_id(lr.trace_id),
                        span_id=acc.hex_id(lr.span_id),
                    )
                )
            except (_Bad, ValueError, TypeError, OverflowError) as e:
                out.rejects.append(Reject(msg.source, msg.offset, f"malformed log record: {e}", acc.encode(lr)))


def _walk_spans(msg: Message, rs: Any, service: str, acc: _Access, out: Decoded) -> None:
    for ss in rs.scope_spans:
        for sp in ss.spans:
            try:
                trace_id, span_id = acc.hex_id(sp.trace_id), acc.hex_id(sp.span_id)
                if len(trace_id) != 32 or len(span_id) != 16:
                    raise _Bad("trace id must be 16 bytes and span id 8 bytes")
                start, end = _time(sp.start_time_unix_nano, "start time"), _time(sp.end_time_unix_nano, "end time")
                if end < start:
                    raise _Bad("span ends before it starts")
                status = sp.status
                out.spans.append(
                    Span(
                        trace_id=trace_id,
                        span_id=span_id,
                        parent_span_id=acc.hex_id(sp.parent_span_id),
                        service=service,
                        name=sp.name,
                        kind=_enum(sp.kind),
                        start_ts=start,
                        end_ts=end,
                        error=status is not None and _enum(status.code) == _STATUS_ERROR,
                        attributes=acc.attributes(sp.attributes),
                    )
                )
            except (_Bad, ValueError, TypeError, OverflowError) as e:
                out.rejects.append(Reject(msg.source, msg.offset, f"malformed span: {e}", acc.encode(sp)))

