"""The native JSON line format, for feeds that are not OpenTelemetry.

Metrics: ``{"ts": <unix seconds | RFC3339>, "service": str, "metric": str, "value": float,
"labels": {..}}``; logs: ``{"ts", "service", "level", "message"}``. A log line with
``"event": "deployment"`` (or ``config_change``) and a ``"version"`` is a change event. A message
may hold several newline-separated objects; each bad line is refused on its own.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import msgspec

from aiops.ingest.otlp import CHANGE_EVENTS
from aiops.ingest.records import ChangeEvent, Decoded, LogRecord, Message, MetricColumns, PointKind, Reject, series_key

_LEVELS = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17, "FATAL": 21, "CRITICAL": 21}
Scalar = str | int | float | bool


class NativeRecord(msgspec.Struct, forbid_unknown_fields=True):
    ts: float | int | str
    service: str
    metric: str | None = None
    value: float | int | str | None = None
    labels: dict[str, Scalar] = {}
    level: str | None = None
    message: str | None = None
    event: str | None = None
    version: str | None = None


_DECODER = msgspec.json.Decoder(NativeRecord)


_MAX_NS = (1 << 63) - 1


def ts_ns(ts: float | int | str) -> int:
    """Unix seconds (int or float) or RFC3339 (no offset means UTC) → unix nanoseconds."""
    if isinstance(ts, str):
        try:
            dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"ts {ts[:40]!r} is neither unix seconds nor RFC3339") from None
        ns = int(dt.replace(tzinfo=dt.tzinfo or UTC).timestamp() * 1e9)
    elif not math.isfinite(ts):
        raise ValueError("ts is not finite")
    else:
        ns = int(round(ts * 1e9)) if isinstance(ts, float) else ts * 1_000_000_000
    if not 0 <= ns <= _MAX_NS:
        raise ValueError(f"ts {ts!r} out of range")
    return ns


def decode_native(msg: Message) -> Decoded:
    """Decode one native message (one or more JSON lines); never raises for bad input."""
    out = Decoded()
    cols = MetricColumns()
    for line in msg.payload.splitlines():
        if not line.strip():
            continue
        try:
            rec = _DECODER.decode(line)
            if not rec.service:
                raise ValueError("empty service")
            ts = ts_ns(rec.ts)
            if rec.metric is not None:
                if rec.value is None:
                    raise ValueError("metric line without value")
                value = float(rec.value)  # "NaN"/"inf" strings become non-finite: the validator refuses them
                key = series_key(rec.service, rec.metric, rec.labels)
                cols.append(key, rec.service, ts, value, PointKind.GAUGE, 0)
            elif rec.event is not None:
                if rec.event not in CHANGE_EVENTS:
                    raise ValueError(f"unknown event {rec.event!r}")
                out.changes.append(ChangeEvent(ts, rec.service, rec.event, rec.version or "", dict(rec.labels)))
            elif rec.message is not None:
                level = (rec.level or "INFO").upper()
                out.logs.append(LogRecord(ts, rec.service, _LEVELS.get(level, 0), level, rec.message, dict(rec.labels)))
            else:
                raise ValueError("line is neither a metric (metric, value) nor a log (message) nor an event")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, OverflowError) as e:
            out.rejects.append(Reject(msg.source, msg.offset, f"invalid native record: {e}", bytes(line)))
    out.metrics = cols.freeze()
    return out
