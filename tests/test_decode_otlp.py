"""OTLP decoding: protobuf and JSON must yield the same records, and refuse the same parts."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from aiops.ingest.decode import decode
from aiops.ingest.otlp import decode_otlp_json, decode_otlp_proto
from aiops.ingest.records import Message, PointKind, series_key

T0 = 1_700_000_000 * 10**9
S = 10**9
TRACE_ID = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SERVER_ID = bytes.fromhex("b7ad6b7169203331")
CLIENT_ID = bytes.fromhex("00f067aa0ba902b7")
DELTA, CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA, metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
ID_KEYS = {"traceId", "spanId", "parentSpanId"}

# One attribute of every AnyValue kind, and what the decoders must make of it.
ATTRS = {"s": "x", "b": True, "i": -7, "d": 2.5, "raw": b"\x00\xff", "arr": ["a", 1, False], "kv": {"k": "v", "n": 1}}
DECODED_ATTRS = {"s": "x", "b": True, "i": -7, "d": 2.5, "raw": "AP8=", "arr": ["a", 1, False], "kv": {"k": "v", "n": 1}}


# --- builders ---------------------------------------------------------------------------------
def set_any(av, v):
    if isinstance(v, bool):
        av.bool_value = v
    elif isinstance(v, int):
        av.int_value = v
    elif isinstance(v, float):
        av.double_value = v
    elif isinstance(v, str):
        av.string_value = v
    elif isinstance(v, bytes):
        av.bytes_value = v
    elif isinstance(v, list):
        av.array_value.SetInParent()
        for x in v:
            set_any(av.array_value.values.add(), x)
    elif isinstance(v, dict):
        av.kvlist_value.SetInParent()
        set_attrs(av.kvlist_value.values, v)


def set_attrs(kvs, attrs):
    for k, v in attrs.items():
        kv = kvs.add(key=k)
        set_any(kv.value, v)


def metrics_request():
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    set_attrs(rm.resource.attributes, {"service.name": "cart", "host.name": "h1"})
    ms = rm.scope_metrics.add().metrics
    g = ms.add(name="cpu.utilization")
    set_attrs(g.gauge.data_points.add(time_unix_nano=T0, as_double=0.5).attributes, ATTRS)
    c = ms.add(name="http.requests")
    c.sum.is_monotonic, c.sum.aggregation_temporality = True, CUMULATIVE
    cp = c.sum.data_points.add(start_time_unix_nano=T0 - 60 * S, time_unix_nano=T0, as_int=120)
    set_attrs(cp.attributes, {"method": "GET"})
    d = ms.add(name="jobs.done")
    d.sum.is_monotonic, d.sum.aggregation_temporality = True, DELTA
    d.sum.data_points.add(start_time_unix_nano=T0 - 10 * S, time_unix_nano=T0, as_int=5)
    q = ms.add(name="queue.depth")
    q.sum.is_monotonic, q.sum.aggregation_temporality = False, CUMULATIVE
    q.sum.data_points.add(time_unix_nano=T0, as_double=3.0)
    h = ms.add(name="latency")
    h.histogram.aggregation_temporality = CUMULATIVE
    hp = h.histogram.data_points.add(start_time_unix_nano=T0 - 60 * S, time_unix_nano=T0, count=10, sum=12.5)
    hp.explicit_bounds.extend([0.5, 1.0, 2.5])
    hp.bucket_counts.extend([2, 3, 4, 1])
    set_attrs(hp.attributes, {"route": "/a"})
    hd = ms.add(name="latency.delta")
    hd.histogram.aggregation_temporality = DELTA
    hdp = hd.histogram.data_points.add(start_time_unix_nano=T0 - 10 * S, time_unix_nano=T0, count=1, sum=0.25)
    hdp.explicit_bounds.extend([1.0])
    hdp.bucket_counts.extend([1, 0])
    sm = ms.add(name="rpc")
    sp = sm.summary.data_points.add(start_time_unix_nano=T0 - 60 * S, time_unix_nano=T0, count=42, sum=10.0)
    sp.quantile_values.add(quantile=0.5, value=0.1)
    sp.quantile_values.add(quantile=0.99, value=0.9)
    return req


def trace_request():
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    set_attrs(rs.resource.attributes, {"service.name": "web"})
    spans = rs.scope_spans.add().spans
    server = spans.add(trace_id=TRACE_ID, span_id=SERVER_ID, name="GET /", kind=trace_pb2.Span.SPAN_KIND_SERVER,
                       start_time_unix_nano=T0, end_time_unix_nano=T0 + 250_000_000)  # fmt: skip
    server.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    set_attrs(server.attributes, {"http.route": "/"})
    client = spans.add(trace_id=TRACE_ID, span_id=CLIENT_ID, parent_span_id=SERVER_ID, name="SELECT",
                       kind=trace_pb2.Span.SPAN_KIND_CLIENT, start_time_unix_nano=T0 + S // 10,
                       end_time_unix_nano=T0 + S // 5)  # fmt: skip
    client.status.code = trace_pb2.Status.STATUS_CODE_OK
    set_attrs(client.attributes, {"db.system": "postgresql", "server.address": "db1"})
    return req


def logs_request():
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    set_attrs(rl.resource.attributes, {"service.name": "pay", "service.version": "1.4.0"})
    records = rl.scope_logs.add().log_records
    err = records.add(time_unix_nano=T0, severity_number=logs_pb2.SEVERITY_NUMBER_ERROR, trace_id=TRACE_ID, span_id=SERVER_ID)
    err.body.string_value = "payment failed"
    set_attrs(err.attributes, {"code": 502})
    info = records.add(time_unix_nano=0, observed_time_unix_nano=T0 + S, severity_number=logs_pb2.SEVERITY_NUMBER_INFO2,
                       severity_text="Information")  # fmt: skip
    info.body.string_value = "ok"
    dep = records.add(time_unix_nano=T0 + 2 * S)
    set_attrs(dep.attributes, {"event.name": "deployment", "service.version": "1.5.0"})
    cfg = records.add(time_unix_nano=T0 + 3 * S)  # version from the resource
    set_attrs(cfg.attributes, {"event.name": "config_change"})
    return req


HAS_EVENT_NAME = "event_name" in logs_pb2.LogRecord.DESCRIPTOR.fields_by_name


def _hex_ids(o):
    if isinstance(o, dict):
        return {k: (base64.b64decode(v).hex() if k in ID_KEYS else _hex_ids(v)) for k, v in o.items()}
    if isinstance(o, list):
        return [_hex_ids(x) for x in o]
    return o


def to_json(req, enums_as_ints=True):
    """As the Collector writes it: protobuf JSON mapping, but ids as hex (and enums as numbers)."""
    return json.dumps(_hex_ids(json_format.MessageToDict(req, use_integers_for_enums=enums_as_ints))).encode()


def msg(signal, fmt, payload):
    return Message(signal, fmt, payload, "kafka:test/0", 7)


def both(signal, req, enums_as_ints=True):
    p = decode_otlp_proto(msg(signal, "otlp_proto", req.SerializeToString()))
    j = decode_otlp_json(msg(signal, "otlp_json", to_json(req, enums_as_ints)))
    return p, j


def rows(d):
    m = d.metrics
    return {
        "metrics": [(m.keys[i], m.services[i], int(m.ts[i]), float(m.values[i]), int(m.kinds[i]), int(m.start_ts[i]))
                    for i in range(len(m))],  # fmt: skip
        "histograms": [asdict(h) for h in d.histograms],
        "logs": [asdict(r) for r in d.logs],
        "spans": [asdict(s) for s in d.spans],
        "changes": [asdict(c) for c in d.changes],
        "rejects": [r.reason for r in d.rejects],
        "no_value_points": d.no_value_points,
    }


def metric_rows(d):
    return {r[0]: r for r in rows(d)["metrics"]}


# --- metrics ----------------------------------------------------------------------------------
def test_metrics_proto_and_json_decode_identically():
    p, j = both("metrics", metrics_request())
    assert rows(p) == rows(j)
    assert not p.rejects and len(p.metrics) == 7 and len(p.histograms) == 2


@pytest.mark.parametrize("fmt", ["otlp_proto", "otlp_json"])
def test_metric_kinds_values_and_series_keys(fmt):
    p, j = both("metrics", metrics_request())
    d = p if fmt == "otlp_proto" else j
    got = metric_rows(d)
    gauge_key = series_key("cart", "cpu.utilization", DECODED_ATTRS)
    assert got[gauge_key] == (gauge_key, "cart", T0, 0.5, PointKind.GAUGE, 0)
    assert got["cart/http.requests{method=GET}"][3:] == (120.0, PointKind.COUNTER_CUMULATIVE, T0 - 60 * S)
    assert got["cart/jobs.done"][3:] == (5.0, PointKind.COUNTER_DELTA, T0 - 10 * S)
    assert got["cart/queue.depth"][3:5] == (3.0, PointKind.GAUGE)
    # summary: one gauge per quantile and a cumulative counter of observations
    assert got["cart/rpc:q0.5"][3:5] == (0.1, PointKind.GAUGE)
    assert got["cart/rpc:q0.99"][3:5] == (0.9, PointKind.GAUGE)
    assert got["cart/rpc:count"][3:5] == (42.0, PointKind.COUNTER_CUMULATIVE)
    assert set(d.metrics.services) == {"cart"}
    assert not any("host.name" in k for k in d.metrics.keys)  # resource attributes are not labels


def test_anyvalue_attributes_of_every_kind():
    for d in both("metrics", metrics_request()):
        gauge = next(k for k in d.metrics.keys if "cpu.utilization" in k)
        assert gauge == series_key("cart", "cpu.utilization", DECODED_ATTRS)
        assert gauge.startswith("cart/cpu.utilization{arr=['a', 1, False],b=True,d=2.5,i=-7,kv={'k': 'v', 'n': 1},raw=AP8=,s=x}")


def test_series_key_sorts_attributes():
    assert series_key("cart", "m", {"b": 2, "a": "x"}) == "cart/m{a=x,b=2}"
    assert series_key("cart", "m", {}) == "cart/m"
    assert series_key("cart", "m", {"a": 1, "b": 2}) == series_key("cart", "m", {"b": 2, "a": 1})


@pytest.mark.parametrize("fmt", ["otlp_proto", "otlp_json"])
def test_histogram_points(fmt):
    d = dict(zip(["otlp_proto", "otlp_json"], both("metrics", metrics_request()), strict=True))[fmt]
    cum, delta = d.histograms
    assert (cum.key, cum.service, cum.ts, cum.start_ts) == ("cart/latency{route=/a}", "cart", T0, T0 - 60 * S)
    assert (cum.count, cum.sum, cum.bounds, cum.bucket_counts, cum.cumulative) == (10, 12.5, (0.5, 1.0, 2.5), (2, 3, 4, 1), True)
    assert (delta.key, delta.count, delta.sum, delta.bounds, delta.bucket_counts, delta.cumulative) == (
        "cart/latency.delta", 1, 0.25, (1.0,), (1, 0), False)


def test_histogram_without_sum_decodes_alike():
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    set_attrs(rm.resource.attributes, {"service.name": "cart"})
    h = rm.scope_metrics.add().metrics.add(name="latency")
    h.histogram.aggregation_temporality = CUMULATIVE
    hp = h.histogram.data_points.add(time_unix_nano=T0, count=3)  # no sum: e.g. negative observations
    hp.explicit_bounds.extend([1.0])
    hp.bucket_counts.extend([1, 2])
    p, j = both("metrics", req)
    assert j.histograms[0].sum is None
    assert p.histograms[0].sum is None  # proto gives 0.0: the mean would read as 0 s


def test_enum_names_in_json_metrics():
    p, j = both("metrics", metrics_request(), enums_as_ints=False)
    assert b"AGGREGATION_TEMPORALITY_DELTA" in to_json(metrics_request(), enums_as_ints=False)
    assert rows(p) == rows(j)


# --- spans ------------------------------------------------------------------------------------
@pytest.mark.parametrize("enums_as_ints", [True, False])
def test_spans_proto_and_json_decode_identically(enums_as_ints):
    p, j = both("spans", trace_request(), enums_as_ints)
    assert rows(p) == rows(j)
    assert not p.rejects


def test_span_fields():
    payload = to_json(trace_request(), enums_as_ints=False)
    assert b'"SPAN_KIND_SERVER"' in payload and b'"STATUS_CODE_ERROR"' in payload
    for d in both("spans", trace_request(), enums_as_ints=False):
        server, client = d.spans
        assert server.trace_id == "0af7651916cd43dd8448eb211c80319c" and server.span_id == "b7ad6b7169203331"
        assert (server.service, server.name, server.kind, server.error, server.parent_span_id) == ("web", "GET /", 2, True, "")
        assert server.duration_s == pytest.approx(0.25)
        assert server.attributes == {"http.route": "/"}
        assert (client.kind, client.error, client.parent_span_id) == (3, False, "b7ad6b7169203331")
        assert client.attributes == {"db.system": "postgresql", "server.address": "db1"}


def span_json(**span):
    base = {"traceId": TRACE_ID.hex(), "spanId": SERVER_ID.hex(), "name": "x", "kind": 2,
            "startTimeUnixNano": str(T0), "endTimeUnixNano": str(T0 + S)}  # fmt: skip
    base.update(span)
    return base


def spans_payload(*spans, service="web"):
    res = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    return json.dumps({"resourceSpans": [{"resource": res, "scopeSpans": [{"spans": list(spans)}]}]}).encode()


def test_json_span_ids_uppercase_hex_is_lowercased():
    d = decode_otlp_json(msg("spans", "otlp_json", spans_payload(span_json(traceId=TRACE_ID.hex().upper()))))
    assert d.spans[0].trace_id == TRACE_ID.hex()


@pytest.mark.parametrize(
    "bad, why",
    [
        ({"traceId": "zz" * 16}, "not hex"),
        ({"spanId": "abc"}, "not hex"),
        ({"spanId": "00" * 4}, "16 bytes"),
        ({"endTimeUnixNano": str(T0 - 1)}, "ends before it starts"),
        ({"kind": "SPAN_KIND_WEIRD"}, "unknown enum"),
        ({"startTimeUnixNano": "12x"}, "malformed span"),
    ],
)
def test_bad_span_refused_alone(bad, why):
    d = decode_otlp_json(msg("spans", "otlp_json", spans_payload(span_json(name="good"), span_json(name="bad", **bad))))
    assert [s.name for s in d.spans] == ["good"]
    assert len(d.rejects) == 1 and why in d.rejects[0].reason
    assert json.loads(d.rejects[0].raw)["name"] == "bad"
    assert (d.rejects[0].source, d.rejects[0].offset) == ("kafka:test/0", 7)


def test_proto_span_with_short_id_refused():
    req = trace_request()
    req.resource_spans[0].scope_spans[0].spans[1].span_id = b"\x01\x02"
    d = decode_otlp_proto(msg("spans", "otlp_proto", req.SerializeToString()))
    assert [s.name for s in d.spans] == ["GET /"]
    assert len(d.rejects) == 1 and trace_pb2.Span.FromString(d.rejects[0].raw).name == "SELECT"


# --- logs and change events -------------------------------------------------------------------
def test_logs_proto_and_json_decode_identically():
    p, j = both("logs", logs_request())
    assert rows(p) == rows(j)
    assert not p.rejects


def test_logs_with_enum_names_in_json():
    payload = to_json(logs_request(), enums_as_ints=False)
    assert b'"SEVERITY_NUMBER_ERROR"' in payload
    p = decode_otlp_proto(msg("logs", "otlp_proto", logs_request().SerializeToString()))
    j = decode_otlp_json(msg("logs", "otlp_json", payload))
    assert rows(j) == rows(p)


@pytest.mark.parametrize("fmt", ["otlp_proto", "otlp_json"])
def test_log_records_and_change_events(fmt):
    d = dict(zip(["otlp_proto", "otlp_json"], both("logs", logs_request()), strict=True))[fmt]
    err, info = d.logs
    assert (err.ts, err.service, err.severity_number, err.severity_text, err.body) == (T0, "pay", 17, "ERROR", "payment failed")
    assert (err.trace_id, err.span_id, err.attributes) == (TRACE_ID.hex(), SERVER_ID.hex(), {"code": 502})
    assert (info.ts, info.severity_number, info.severity_text, info.trace_id) == (T0 + S, 10, "Information", "")
    dep, cfg = d.changes
    assert (dep.ts, dep.service, dep.kind, dep.version) == (T0 + 2 * S, "pay", "deployment", "1.5.0")
    assert dep.attributes == {"event.name": "deployment", "service.version": "1.5.0"}
    assert (cfg.ts, cfg.kind, cfg.version) == (T0 + 3 * S, "config_change", "1.4.0")  # version from the resource


@pytest.mark.skipif(not HAS_EVENT_NAME, reason="installed opentelemetry-proto has no LogRecord.event_name")
def test_log_record_event_name_field():
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    set_attrs(rl.resource.attributes, {"service.name": "pay"})
    records = rl.scope_logs.add().log_records
    set_attrs(records.add(time_unix_nano=T0, event_name="deployment").attributes, {"service.version": "9"})
    records.add(time_unix_nano=T0 + S, event_name="config_change")
    other = records.add(time_unix_nano=T0 + 2 * S, event_name="exception", severity_number=logs_pb2.SEVERITY_NUMBER_WARN)
    other.body.string_value = "retrying"
    p, j = both("logs", req)
    assert rows(p) == rows(j)
    assert [(c.kind, c.version) for c in p.changes] == [("deployment", "9"), ("config_change", "")]
    assert [(r.body, r.severity_text) for r in p.logs] == [("retrying", "WARN")]  # an event that is no change is a log


def test_severity_text_derived_from_number():
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    set_attrs(rl.resource.attributes, {"service.name": "pay"})
    recs = rl.scope_logs.add().log_records
    for n in (0, 1, 5, 8, 9, 12, 13, 17, 20, 21, 24):
        recs.add(time_unix_nano=T0, severity_number=n)
    for d in both("logs", req):
        assert [r.severity_text for r in d.logs] == ["", "TRACE", "DEBUG", "DEBUG", "INFO", "INFO", "WARN", "ERROR",
                                                     "ERROR", "FATAL", "FATAL"]  # fmt: skip


def test_log_body_of_other_kinds_is_stringified():
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    set_attrs(rl.resource.attributes, {"service.name": "pay"})
    recs = rl.scope_logs.add().log_records
    set_any(recs.add(time_unix_nano=T0).body, 42)
    recs.add(time_unix_nano=T0)  # no body
    p, j = both("logs", req)
    assert [r.body for r in p.logs] == [r.body for r in j.logs] == ["42", ""]


# --- refusals ---------------------------------------------------------------------------------
@pytest.mark.parametrize("signal", ["metrics", "logs", "spans"])
@pytest.mark.parametrize("fmt", ["otlp_proto", "otlp_json"])
def test_garbage_refused_whole(signal, fmt):
    payload = b"\xff\xfe\x00garbage{"
    d = decode(msg(signal, fmt, payload))
    assert len(d.rejects) == 1
    r = d.rejects[0]
    assert r.raw == payload and r.reason.startswith("invalid OTLP/") and signal in r.reason
    assert not len(d.metrics) and not d.logs and not d.spans


@pytest.mark.parametrize("signal", ["metrics", "logs", "spans"])
def test_invalid_utf8_inside_a_json_string_refused_whole(signal):
    # msgspec raises UnicodeDecodeError here, not DecodeError: found by tests/reliability/test_poison.py
    block = {"metrics": b"resourceMetrics", "logs": b"resourceLogs", "spans": b"resourceSpans"}[signal]
    payload = b'{"' + block + b'":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"\xf9"}}]}}]}'
    d = decode(msg(signal, "otlp_json", payload))
    assert len(d.rejects) == 1 and d.rejects[0].raw == payload and "utf-8" in d.rejects[0].reason


def test_wrong_schema_json_names_the_path():
    payload = json.dumps({"resourceMetrics": [{"scopeMetrics": "oops"}]}).encode()
    d = decode_otlp_json(msg("metrics", "otlp_json", payload))
    assert len(d.rejects) == 1
    assert "$.resourceMetrics[0].scopeMetrics" in d.rejects[0].reason
    assert d.rejects[0].raw == payload


def test_wrong_type_deep_inside_names_the_path():
    req = json.loads(to_json(metrics_request()))
    req["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][1]["sum"]["isMonotonic"] = "yes"
    d = decode_otlp_json(msg("metrics", "otlp_json", json.dumps(req).encode()))
    assert len(d.rejects) == 1 and "$.resourceMetrics[0].scopeMetrics[0].metrics[1].sum.isMonotonic" in d.rejects[0].reason


def _two_blocks():
    req = metrics_request()
    bad = req.resource_metrics.add()
    set_attrs(bad.resource.attributes, {"host.name": "orphan"})
    bad.scope_metrics.add().metrics.add(name="lost").gauge.data_points.add(time_unix_nano=T0, as_double=1.0)
    return req, bad


def test_missing_service_name_refuses_that_block_proto():
    req, bad = _two_blocks()
    d = decode_otlp_proto(msg("metrics", "otlp_proto", req.SerializeToString()))
    assert len(d.metrics) == 7  # the good block still decodes
    assert len(d.rejects) == 1 and "service.name" in d.rejects[0].reason
    assert metrics_pb2.ResourceMetrics.FromString(d.rejects[0].raw) == bad


def test_missing_service_name_refuses_that_block_json():
    req, _ = _two_blocks()
    d = decode_otlp_json(msg("metrics", "otlp_json", to_json(req)))
    assert len(d.metrics) == 7
    assert len(d.rejects) == 1 and "service.name" in d.rejects[0].reason
    block = json.loads(d.rejects[0].raw)
    assert block["resource"]["attributes"] == [{"key": "host.name", "value": {"stringValue": "orphan"}}]
    assert block["scopeMetrics"][0]["metrics"][0]["name"] == "lost"


@pytest.mark.parametrize("service", [{"intValue": "5"}, {"stringValue": ""}, None])
def test_non_string_or_empty_service_name_refused(service):
    res = {"attributes": [{"key": "service.name", **({"value": service} if service else {})}]}
    payload = json.dumps({"resourceSpans": [{"resource": res, "scopeSpans": [{"spans": [span_json()]}]}]}).encode()
    d = decode_otlp_json(msg("spans", "otlp_json", payload))
    assert not d.spans and len(d.rejects) == 1 and "service.name" in d.rejects[0].reason


@pytest.mark.parametrize("fmt", ["otlp_proto", "otlp_json"])
def test_exponential_histogram_refused_siblings_decode(fmt):
    req = metrics_request()
    e = req.resource_metrics[0].scope_metrics[0].metrics.add(name="exp")
    e.exponential_histogram.data_points.add(time_unix_nano=T0, count=1, scale=2)
    payload = req.SerializeToString() if fmt == "otlp_proto" else to_json(req)
    d = decode(msg("metrics", fmt, payload))
    assert len(d.metrics) == 7 and len(d.histograms) == 2
    assert len(d.rejects) == 1 and "exponential" in d.rejects[0].reason and "'exp'" in d.rejects[0].reason


def test_malformed_json_point_refused_alone():
    req = json.loads(to_json(metrics_request()))
    points = req["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][1]["sum"]["dataPoints"]
    points.append(dict(points[0], asInt="12x", timeUnixNano=str(T0 + S)))
    points.append(dict(points[0], timeUnixNano=str(T0 + 2 * S)))
    d = decode_otlp_json(msg("metrics", "otlp_json", json.dumps(req).encode()))
    counter = [float(v) for k, v in zip(d.metrics.keys, d.metrics.values, strict=True) if k.startswith("cart/http.requests")]
    assert counter == [120.0, 120.0]
    assert len(d.rejects) == 1
    assert "'http.requests'" in d.rejects[0].reason and "malformed data point" in d.rejects[0].reason
    assert json.loads(d.rejects[0].raw)["asInt"] == "12x"


def test_malformed_proto_histogram_point_refused_alone():
    req = metrics_request()
    h = req.resource_metrics[0].scope_metrics[0].metrics[4].histogram
    bad = h.data_points.add(time_unix_nano=T0 + S, count=1)
    bad.explicit_bounds.extend([1.0, 2.0])
    bad.bucket_counts.extend([1])  # needs 3 counts
    worse = h.data_points.add(time_unix_nano=T0 + 2 * S, count=1)
    worse.explicit_bounds.extend([2.0, 1.0])
    worse.bucket_counts.extend([1, 0, 0])
    d = decode_otlp_proto(msg("metrics", "otlp_proto", req.SerializeToString()))
    assert len(d.histograms) == 2 and len(d.metrics) == 7
    reasons = sorted(r.reason for r in d.rejects)
    assert len(reasons) == 2
    assert "bucket counts for 2 bounds" in reasons[0] and "not increasing" in reasons[1]


def test_point_without_value_refused():
    payload = json.dumps({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "a"}}]},
        "scopeMetrics": [{"metrics": [{"name": "g", "gauge": {"dataPoints": [{"timeUnixNano": str(T0)}]}},
                                      {"name": "nodata"}, {"gauge": {"dataPoints": []}}]}]}]}).encode()  # fmt: skip
    d = decode_otlp_json(msg("metrics", "otlp_json", payload))
    assert not len(d.metrics)
    assert sorted(r.reason for r in d.rejects) == ["metric 'g': malformed data point: no value", "metric 'nodata' has no data",
                                                   "metric has no name"]  # fmt: skip


@pytest.mark.parametrize("signal", ["metrics", "logs", "spans"])
def test_empty_request_refused(signal):
    for fmt, payload in (("otlp_proto", b""), ("otlp_json", b"{}")):
        d = decode(msg(signal, fmt, payload))
        assert len(d.rejects) == 1 and d.rejects[0].reason.startswith("empty request")


def test_payload_for_another_signal_is_not_silently_empty():
    d = decode_otlp_json(msg("logs", "otlp_json", to_json(metrics_request())))
    assert len(d.rejects) == 1 and "empty request" in d.rejects[0].reason


@pytest.mark.parametrize("fmt", ["otlp_proto", "otlp_json"])
def test_no_recorded_value_points_counted_not_rejected(fmt):
    req = metrics_request()
    g = req.resource_metrics[0].scope_metrics[0].metrics[0].gauge
    g.data_points.add(time_unix_nano=T0 + S, flags=metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK)
    h = req.resource_metrics[0].scope_metrics[0].metrics[4].histogram
    h.data_points.add(time_unix_nano=T0 + S, flags=1)
    payload = req.SerializeToString() if fmt == "otlp_proto" else to_json(req)
    d = decode(msg("metrics", fmt, payload))
    assert d.no_value_points == 2
    assert not d.rejects and len(d.metrics) == 7 and len(d.histograms) == 2


def test_huge_int_value_refused_alone():
    req = json.loads(to_json(metrics_request()))
    points = req["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][1]["sum"]["dataPoints"]
    points.append(dict(points[0], asInt="9" * 400, timeUnixNano=str(T0 + S)))
    d = decode_otlp_json(msg("metrics", "otlp_json", json.dumps(req).encode()))
    assert len(d.metrics) == 7 and len(d.rejects) == 1


@pytest.mark.parametrize("fmt", ["otlp_proto", "otlp_json"])
def test_timestamp_beyond_int64_refused_not_raised(fmt):
    req = metrics_request()
    req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points.add(time_unix_nano=2**64 - 1, as_double=1.0)
    payload = req.SerializeToString() if fmt == "otlp_proto" else to_json(req)
    d = decode(msg("metrics", fmt, payload))
    assert len(d.metrics) == 7 and len(d.rejects) == 1


@pytest.mark.parametrize("bound", ["Infinity", "NaN"])
def test_non_finite_histogram_bound_refused(bound):
    req = json.loads(to_json(metrics_request()))
    hp = req["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][4]["histogram"]["dataPoints"][0]
    hp["explicitBounds"] = [0.5, 1.0, bound]
    d = decode_otlp_json(msg("metrics", "otlp_json", json.dumps(req).encode()))
    assert len(d.histograms) == 1 and len(d.rejects) == 1


def test_unknown_json_fields_ignored():
    req = json.loads(to_json(trace_request()))
    req["resourceSpans"][0]["schemaUrl"] = "https://opentelemetry.io/schemas/1.21.0"
    req["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["futureField"] = {"x": 1}
    d = decode_otlp_json(msg("spans", "otlp_json", json.dumps(req).encode()))
    assert len(d.spans) == 2 and not d.rejects


def test_unknown_format_is_a_reject():
    d = decode(Message("metrics", "avro", b"x", "s", 3))  # type: ignore[arg-type]
    assert len(d.rejects) == 1 and "unknown format" in d.rejects[0].reason
