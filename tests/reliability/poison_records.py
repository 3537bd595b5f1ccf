"""Seeded poison records for the reliability suite and benchmarks/poison.py.

``poison(prefix, good, n, seed)`` returns ``n`` Kafka sends ``(topic, key, value, partition)``,
each a record the engine must refuse, of these kinds (round-robin, so every kind is ~n/13):

random bytes, empty message, truncated / bit-flipped valid OTLP protobuf, truncated /
bit-flipped valid OTLP/JSON, valid JSON of the wrong schema, NaN / +-Inf / +-1e308 values,
timestamps far in the future / before 2000 / zero / beyond int64, a resource without
``service.name``, a huge (16 KiB) attribute string on a point that is otherwise refused.

What "refused" means is the code's own definition (aiops/ingest/otlp.py, validate.py): a message
that does not parse is one reject carrying the message bytes; a message that parses is refused
per resource block (no ``service.name``), per metric or per point, each reject carrying the
encoded part. :func:`expected_rejects` is the oracle: it runs one record through the real decoder
and validator (with a clock an hour ahead, so "in the future" cannot turn into "accepted" while
the test runs) and returns the (reason, raw) of every reject, or ``None`` when any part of the
record would be accepted. Such a record is not poison by the code's definition (a bit flip in a
digit of a value, say) and is redrawn; all refusal reasons allowed here are stateless (no
"late", no "out-of-order"), so a record refused in isolation is refused identically in the stream.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from aiops.ingest.decode import decode
from aiops.ingest.records import Message
from aiops.ingest.validate import Validator

KINDS = ("random_bytes", "empty", "proto_truncated", "proto_bitflip", "json_truncated", "json_bitflip",
         "wrong_schema", "non_finite", "ts_future", "ts_past", "ts_overflow", "no_service_name",
         "huge_attribute")  # fmt: skip
HUGE = 16 * 1024
_PROTO_TYPES = {"metrics": ExportMetricsServiceRequest, "logs": ExportLogsServiceRequest,
                "spans": ExportTraceServiceRequest}  # fmt: skip
_STATEFUL = ("late", "out-of-order", "duplicate")
WRONG_SCHEMA = [
    {"resourceMetrics": "not a list"}, {"resourceMetrics": [{"scopeMetrics": 5}]}, [1, 2, 3], "just a string", 42,
    {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": 7}]}]}]}, {"hello": "world"}, None,
    {"resourceMetrics": [{"resource": {"attributes": {"service.name": "x"}}}]},
    {"resourceLogs": [{"scopeLogs": [{"logRecords": "no"}]}]}, {"resourceSpans": [{"scopeSpans": [{"spans": [1]}]}]},
]  # fmt: skip


@dataclass(frozen=True)
class Topics:
    json: str
    proto: str
    logs: str
    spans: str

    @classmethod
    def of(cls, prefix: str) -> Topics:
        return cls(f"{prefix}-metrics-json", f"{prefix}-metrics-proto", f"{prefix}-logs", f"{prefix}-spans")

    def signal_format(self, topic: str) -> tuple[str, str]:
        return {self.json: ("metrics", "otlp_json"), self.proto: ("metrics", "otlp_proto"),
                self.logs: ("logs", "otlp_json"), self.spans: ("spans", "otlp_json")}[topic]  # fmt: skip


def _attr(key: str, value: str) -> dict:
    return {"key": key, "value": {"stringValue": value}}


def _gauge(service: str | None, ts: int | str, value: object, point_attrs: list | None = None) -> dict:
    resource = [_attr("service.name", service)] if service is not None else [_attr("host.name", "poison-host")]
    dp = {"timeUnixNano": str(ts), "asDouble": value, "attributes": point_attrs or []}
    return {"resourceMetrics": [{"resource": {"attributes": resource}, "scopeMetrics": [
        {"metrics": [{"name": "poison.gauge", "gauge": {"dataPoints": [dp]}}]}]}]}  # fmt: skip


def _flip(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def expected_rejects(topics: Topics, topic: str, payload: bytes) -> list[tuple[str, bytes]] | None:
    """The (reason, raw) the engine dead-letters for this record alone; None if any of it is accepted."""
    signal, fmt = topics.signal_format(topic)
    ahead = time.time_ns() + 3600 * 10**9
    d = Validator(now_ns=lambda: ahead).validate(decode(Message(signal, fmt, payload, "oracle", 0)), "oracle", 0)
    if len(d.metrics) or d.histograms or d.logs or d.spans or d.changes or d.no_value_points or not d.rejects:
        return None
    if any(s in r.reason for r in d.rejects for s in _STATEFUL):
        return None
    return [(r.reason, r.raw) for r in d.rejects]


def _candidate(kind: str, rng: random.Random, t: Topics, good: list, now: int) -> tuple[str, bytes]:
    svc = f"poison-{rng.randrange(4)}"
    if kind == "random_bytes":
        return rng.choice([t.json, t.proto, t.logs, t.spans]), rng.randbytes(rng.randint(1, 600))
    if kind == "empty":
        return rng.choice([t.json, t.proto, t.logs, t.spans]), b""
    if kind in ("proto_truncated", "proto_bitflip", "json_truncated", "json_bitflip"):
        m = rng.choice(good)
        topic = {"metrics": t.proto, "logs": t.logs, "spans": t.spans}[m.kind]
        body = m.payload
        if kind.startswith("proto"):
            body = json_format.Parse(m.payload, _PROTO_TYPES[m.kind]()).SerializeToString()
            topic = t.proto if m.kind == "metrics" else topic
            if m.kind != "metrics":  # only the metrics topic is read as protobuf
                body, topic = json_format.Parse(rng.choice([g for g in good if g.kind == "metrics"]).payload,
                                                ExportMetricsServiceRequest()).SerializeToString(), t.proto  # fmt: skip
        elif m.kind == "metrics":
            topic = t.json
        if kind.endswith("truncated"):
            return topic, body[: rng.randrange(1, len(body))]
        return topic, _flip(rng, body)
    if kind == "wrong_schema":
        return rng.choice([t.json, t.logs, t.spans]), json.dumps(rng.choice(WRONG_SCHEMA)).encode()
    if kind == "non_finite":
        value = rng.choice(["NaN", "Infinity", "-Infinity", 1e308, -1e308, 1e101])
        req = _gauge(svc, now - rng.randrange(10**12), value)
    elif kind == "ts_future":
        req = _gauge(svc, now + rng.randrange(86400, 100 * 365 * 86400) * 10**9, 1.0)
    elif kind == "ts_past":
        req = _gauge(svc, rng.choice([1, rng.randrange(1, 946_684_799) * 10**9]), 1.0)
    elif kind == "ts_overflow":
        req = _gauge(svc, rng.choice([2**63, 2**64 - 1, 10**30, -5]), 1.0)
    elif kind == "no_service_name":
        req = _gauge(None, now - rng.randrange(10**12), 1.0)
    elif kind == "huge_attribute":  # no size limit on attributes in the code: refused for its value
        huge = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=HUGE))
        req = _gauge(svc, now - rng.randrange(10**12), "NaN", [_attr("huge", huge)])
    else:
        raise ValueError(kind)
    body = json.dumps(req).encode()
    if rng.random() < 0.5 and kind != "ts_overflow":  # same content as protobuf (int64 overflow can't be)
        return t.proto, json_format.Parse(body, ExportMetricsServiceRequest()).SerializeToString()
    return t.json, body


def poison(prefix: str, good: list, n: int = 10_000, seed: int = 20261127) -> tuple[list, list, dict[str, int]]:
    """``n`` refused records: (sends, expected rejects per send, redraws per kind)."""
    rng, t, now = random.Random(seed), Topics.of(prefix), time.time_ns()
    sends, expected, redrawn = [], [], dict.fromkeys(KINDS, 0)
    partitions = {t.json: 2, t.proto: 2, t.logs: 1, t.spans: 1}
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        while True:
            topic, body = _candidate(kind, rng, t, good, now)
            exp = expected_rejects(t, topic, body)
            if exp is not None:
                break
            redrawn[kind] += 1
        sends.append((topic, b"poison", body, rng.randrange(partitions[topic])))
        expected.append(exp)
    return sends, expected, redrawn


def interleave(good: list, bad: list, seed: int = 1) -> list:
    """Poison spread through good traffic at seeded positions; each list keeps its own order."""
    rng = random.Random(seed)
    marks = sorted(rng.sample(range(len(good) + len(bad)), len(bad)))
    out, gi, bi, marks_set = [], 0, 0, set(marks)
    for pos in range(len(good) + len(bad)):
        if pos in marks_set:
            out.append(bad[bi])
            bi += 1
        else:
            out.append(good[gi])
            gi += 1
    return out
