"""The native JSON-lines format: metrics, logs and change events, one bad line refused alone."""

from __future__ import annotations

import json
import math
import time

import pytest

from aiops.ingest.decode import decode
from aiops.ingest.native import decode_native
from aiops.ingest.records import Message, PointKind

T0_S = 1_700_000_000
T0 = T0_S * 10**9


def native(*lines, raw=None):
    payload = raw if raw is not None else b"\n".join(json.dumps(x).encode() if isinstance(x, dict) else x for x in lines)
    return decode_native(Message("metrics", "native", payload, "file:feed.jsonl", 12))


def metric(**kw):
    return {"ts": T0_S, "service": "cart", "metric": "cpu", "value": 0.5} | kw


@pytest.mark.parametrize(
    "ts, expected",
    [
        (T0_S, T0),
        (T0_S + 0.25, T0 + 250_000_000),
        ("2023-11-14T22:13:20Z", T0),
        ("2023-11-14T22:13:20.5Z", T0 + 500_000_000),
        ("2023-11-15T00:13:20+02:00", T0),
        ("2023-11-14T22:13:20+00:00", T0),
    ],
)
def test_timestamps(ts, expected):
    d = native(metric(ts=ts))
    assert not d.rejects
    assert abs(d.metrics.ts.tolist()[0] - expected) < 1_000  # float seconds carry ~256 ns of precision at 1.7e18 ns


def test_metric_line_with_labels():
    d = native(metric(labels={"b": 2, "a": "x", "ok": True, "r": 0.5}, value=3))
    assert d.metrics.keys == ["cart/cpu{a=x,b=2,ok=True,r=0.5}"]
    assert d.metrics.services == ["cart"]
    assert d.metrics.values.tolist() == [3.0]
    assert d.metrics.kinds.tolist() == [PointKind.GAUGE]
    assert d.metrics.start_ts.tolist() == [0]


def test_string_values_parse_and_non_finite_pass_to_validator():
    d = native(metric(value="1.5"), metric(value="NaN", metric="m2"), metric(value="-inf", metric="m3"))
    v = d.metrics.values.tolist()
    assert v[0] == 1.5 and math.isnan(v[1]) and v[2] == -math.inf and not d.rejects


def test_log_lines():
    d = native(
        {"ts": T0_S, "service": "pay", "level": "error", "message": "boom"},
        {"ts": T0_S + 1, "service": "pay", "message": "default level"},
        {"ts": T0_S + 2, "service": "pay", "level": "warning", "message": "w", "labels": {"k": "v"}},
        {"ts": T0_S + 3, "service": "pay", "level": "chatty", "message": "?"},
    )
    assert not d.rejects and not len(d.metrics)
    got = [(r.ts, r.service, r.severity_number, r.severity_text, r.body, r.attributes) for r in d.logs]
    assert got == [
        (T0, "pay", 17, "ERROR", "boom", {}),
        (T0 + 10**9, "pay", 9, "INFO", "default level", {}),
        (T0 + 2 * 10**9, "pay", 13, "WARNING", "w", {"k": "v"}),
        (T0 + 3 * 10**9, "pay", 0, "CHATTY", "?", {}),
    ]


def test_deployment_and_config_events():
    d = native(
        {"ts": "2023-11-14T22:13:20Z", "service": "pay", "event": "deployment", "version": "2.0.1", "labels": {"by": "ci"}},
        {"ts": T0_S + 5, "service": "pay", "event": "config_change"},
    )
    assert not d.rejects and not d.logs
    dep, cfg = d.changes
    assert (dep.ts, dep.service, dep.kind, dep.version, dep.attributes) == (T0, "pay", "deployment", "2.0.1", {"by": "ci"})
    assert (cfg.ts, cfg.kind, cfg.version) == (T0 + 5 * 10**9, "config_change", "")


def test_several_lines_one_bad_refused_alone():
    bad = b'{"ts": 1700000000, "service": "cart", "metric": "cpu"'
    d = native(metric(), bad, metric(metric="mem", value=2), {"ts": T0_S, "service": "cart", "message": "hi"})
    assert d.metrics.keys == ["cart/cpu", "cart/mem"]
    assert len(d.logs) == 1
    assert len(d.rejects) == 1
    r = d.rejects[0]
    assert r.raw == bad and r.reason.startswith("invalid native record") and (r.source, r.offset) == ("file:feed.jsonl", 12)


@pytest.mark.parametrize(
    "line, why",
    [
        (metric(colour="red"), "unknown field"),
        (metric(value=None), "without value"),
        (metric(value="abc"), "could not convert"),
        (metric(value=True), "Expected"),
        (metric(service=""), "empty service"),
        ({"ts": T0_S, "metric": "cpu", "value": 1}, "service"),
        (metric(ts="yesterday"), "neither unix seconds nor RFC3339"),
        (metric(ts="NaN"), "neither unix seconds nor RFC3339"),
        (metric(ts=1e300), "infinity"),
        ({"ts": T0_S, "service": "cart"}, "neither a metric"),
        ({"ts": T0_S, "service": "cart", "event": "reboot"}, "unknown event"),
        (metric(labels={"nested": {"a": 1}}), "Expected"),
        (b"[1, 2]", "Expected `object`"),
        (b"\xff\xfe", "invalid native record"),
    ],
)
def test_bad_lines_refused_with_reason(line, why):
    d = native(line, metric(metric="ok"))
    assert d.metrics.keys == ["cart/ok"]
    assert len(d.rejects) == 1
    assert why in d.rejects[0].reason


def test_non_finite_float_ts_refused():
    d = native(raw=b'{"ts": 1e999, "service": "a", "metric": "m", "value": 1}')
    assert not len(d.metrics) and len(d.rejects) == 1


def test_blank_lines_skipped_crlf_accepted():
    payload = b"\r\n".join([json.dumps(metric()).encode(), b"", b"   ", json.dumps(metric(metric="b")).encode(), b""])
    d = native(raw=payload)
    assert d.metrics.keys == ["cart/cpu", "cart/b"] and not d.rejects


def test_empty_payload_yields_nothing():
    d = native(raw=b"")
    assert not len(d.metrics) and not d.logs and not d.changes and not d.rejects


def test_dispatch_through_decode():
    d = decode(Message("logs", "native", json.dumps(metric()).encode(), "s", 1))
    assert d.metrics.keys == ["cart/cpu"]  # the decoder tells metrics from logs itself


def test_far_future_ts_refused_not_raised():
    d = native(metric(ts=10**10), metric(metric="ok"))
    assert d.metrics.keys == ["cart/ok"] and len(d.rejects) == 1


@pytest.fixture
def new_york_tz(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_ts_without_offset_does_not_depend_on_host_timezone(new_york_tz):
    d = native(metric(ts="2023-11-14T22:13:20"))
    # RFC3339 requires an offset: refuse the line, or read it as UTC, but never as host-local time
    assert len(d.rejects) == 1 or d.metrics.ts.tolist() == [T0]
