"""Spans and logs become per-window series; late records are returned, never folded in."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aiops.ingest.aggregate import LogMetrics, SpanMetrics, callee_of
from aiops.ingest.records import LogRecord, Span

S = 10**9
W0 = 1_700_000_010 * S  # a multiple of 30 s: the start of a window
MS = 10**6


def span(service, end, dur_ms, kind=2, error=False, **attrs):
    return Span("ab" * 16, "cd" * 8, "", service, "op", kind, end - dur_ms * MS, end, error, attrs)


def log(service, ts, severity):
    return LogRecord(ts, service, severity, "", "m", {})


def add(agg, rows, source="src"):
    late = []
    agg.add(rows, source, 1, late)
    return late


def as_dict(batch):
    return {(batch.keys[i], int(batch.ts[i])): float(batch.values[i]) for i in range(len(batch))}


def test_callee_of():
    assert callee_of(span("a", W0, 1, kind=3, **{"peer.service": "cart"})) == "cart"
    assert callee_of(span("a", W0, 1, kind=3, **{"db.system": "postgresql", "server.address": "db1"})) == "db1"
    assert callee_of(span("a", W0, 1, kind=3, **{"db.system": "redis"})) == "redis"
    assert callee_of(span("a", W0, 1, kind=3, **{"http.url": "x"})) is None


def test_server_window_rate_error_ratio_percentiles():
    sm = SpanMetrics(30, 30)
    durations = [100, 200, 300, 400]
    assert add(sm, [span("cart", W0 + (i + 1) * S, d, error=(i == 3)) for i, d in enumerate(durations)]) == []
    assert len(sm.flush()) == 0  # window still open
    add(sm, [span("cart", W0 + 59 * S, 5)])  # the end of the window + grace not yet reached
    assert len(sm.flush()) == 0
    add(sm, [span("cart", W0 + 60 * S, 5)])  # watermark passes W0 + 30 s + 30 s grace
    out = as_dict(sm.flush())
    end = W0 + 30 * S
    p50, p99 = np.percentile(np.array(durations) / 1000, (50, 99))
    assert out == pytest.approx({
        ("cart/span.server:rate", end): 4 / 30,
        ("cart/span.server:error_ratio", end): 0.25,
        ("cart/span.server.duration:p50", end): p50,
        ("cart/span.server.duration:p99", end): p99,
    })  # fmt: skip
    assert out[("cart/span.server.duration:p50", end)] == pytest.approx(0.25)
    assert set(sm.flush(final=True).services) <= {"cart"}


def test_client_edges_per_callee():
    sm = SpanMetrics(30, 30)
    add(sm, [
        span("web", W0 + S, 10, kind=3, **{"peer.service": "cart"}),
        span("web", W0 + 2 * S, 30, kind=3, error=True, **{"peer.service": "cart"}),
        span("cart", W0 + 3 * S, 50, kind=3, **{"db.system": "postgresql", "server.address": "db1"}),
        span("cart", W0 + 3 * S, 50, kind=3),  # a client span naming no callee: no edge
        span("cart", W0 + 3 * S, 50, kind=1),  # internal: ignored
    ])  # fmt: skip
    batch = sm.flush(final=True)
    out = as_dict(batch)
    end = W0 + 30 * S
    owner = dict(zip(batch.keys, batch.services, strict=True))
    assert owner["web/span.client:rate{peer=cart}"] == "cart"  # edge evidence is about the callee
    assert owner["cart/span.client.duration:p99{peer=db1}"] == "db1"
    assert out[("web/span.client:rate{peer=cart}", end)] == pytest.approx(2 / 30)
    assert out[("web/span.client:error_ratio{peer=cart}", end)] == 0.5
    assert out[("web/span.client.duration:p99{peer=cart}", end)] == pytest.approx(0.01 + 0.02 * 0.99)
    assert out[("cart/span.client:rate{peer=db1}", end)] == pytest.approx(1 / 30)
    suffixes = (":rate", ":error_ratio", ".duration:p50", ".duration:p99")
    assert {k.split("{")[0] for k, _ in out} == {f"{s}/span.client{x}" for s in ("web", "cart") for x in suffixes}


def test_spans_windowed_by_end_time():
    sm = SpanMetrics(30, 30)
    add(sm, [span("a", W0 + 31 * S, 2000), span("a", W0 + 29 * S, 2000)])  # both start in the first window
    out = as_dict(sm.flush(final=True))
    assert out[("a/span.server:rate", W0 + 30 * S)] == pytest.approx(1 / 30)
    assert out[("a/span.server:rate", W0 + 60 * S)] == pytest.approx(1 / 30)


def test_late_spans_returned_as_rejects():
    sm = SpanMetrics(30, 30)
    add(sm, [span("a", W0 + S, 1), span("a", W0 + 61 * S, 1)])
    assert len(sm.flush()) == 4
    late = add(sm, [span("a", W0 + 2 * S, 1), span("a", W0 + 40 * S, 1)])
    assert len(late) == 1
    assert "late span" in late[0].reason and json.loads(late[0].raw)["end_ts"] == W0 + 2 * S
    assert (late[0].source, late[0].offset) == ("src", 1)
    out = as_dict(sm.flush(final=True))
    rates = {ts: v for (k, ts), v in out.items() if k == "a/span.server:rate"}
    assert rates == pytest.approx({W0 + 60 * S: 1 / 30, W0 + 90 * S: 1 / 30})  # the on-time one counted, once


def test_slow_source_holds_windows_open():
    sm = SpanMetrics(30, 30)
    add(sm, [span("a", W0 + S, 1)], source="p0")
    add(sm, [span("a", W0 + 2 * S, 1)], source="p1")
    add(sm, [span("a", W0 + 90 * S, 1)], source="p0")
    assert len(sm.flush()) == 0  # p1 has not passed the first window yet
    add(sm, [span("a", W0 + 10 * S, 1)], source="p1")  # not late: its own partition is behind
    add(sm, [span("a", W0 + 61 * S, 1)], source="p1")
    out = as_dict(sm.flush())
    assert out == pytest.approx({("a/span.server:rate", W0 + 30 * S): 3 / 30, **{
        (k, W0 + 30 * S): v for k, v in (("a/span.server:error_ratio", 0.0), ("a/span.server.duration:p50", 0.001),
                                         ("a/span.server.duration:p99", 0.001))}})  # fmt: skip


def test_log_severity_rates_with_zeros():
    lm = LogMetrics(30, 30)
    add(lm, [log("pay", W0 + S, 17), log("pay", W0 + 2 * S, 21), log("pay", W0 + 3 * S, 13), log("pay", W0 + 4 * S, 9),
             log("pay", W0 + 5 * S, 0), log("cart", W0 + 6 * S, 9)])  # fmt: skip
    add(lm, [log("cart", W0 + 35 * S, 9)])  # the second window: pay is silent
    out = {k: v for k, v in as_dict(lm.flush(final=True)).items() if "/log.records:" in k[0]}
    w1, w2 = W0 + 30 * S, W0 + 60 * S
    key = "{}/log.records:rate{{severity={}}}"
    assert out[(key.format("pay", "ERROR"), w1)] == pytest.approx(2 / 30)
    assert out[(key.format("pay", "WARN"), w1)] == pytest.approx(1 / 30)
    assert out[(key.format("pay", "INFO"), w1)] == pytest.approx(2 / 30)
    assert out[(key.format("cart", "ERROR"), w1)] == 0.0
    assert out[(key.format("cart", "INFO"), w2)] == pytest.approx(1 / 30)
    for sev in ("ERROR", "WARN", "INFO"):
        assert out[(key.format("pay", sev), w2)] == 0.0  # zeros, not missing points
    assert len(out) == 12


def test_quiet_windows_are_zeros_even_when_nobody_else_writes():
    """A window no record fell into still closes, as zeros: whether it does must not depend on
    which other services share the stream (a Kafka partition of one service, in a scaled-out install)."""
    lm = LogMetrics(30, 30)
    add(lm, [log("pay", W0 + S, 13)])
    first = as_dict(lm.flush())
    add(lm, [log("pay", W0 + 125 * S, 13)])  # nothing at all in the three windows between
    out = {ts: v for (k, ts), v in as_dict(lm.flush()).items() if k == "pay/log.records:rate{severity=WARN}"}
    assert not first
    assert out == {W0 + 30 * S: pytest.approx(1 / 30), W0 + 60 * S: 0.0, W0 + 90 * S: 0.0}
    add(lm, [log("pay", W0 + 40 * 3600 * S, 13)])  # back after 40 hours away: not 4,800 zeros
    assert len(set(lm.flush().ts.tolist())) <= 125


def test_late_logs_returned():
    lm = LogMetrics(30, 30)
    add(lm, [log("a", W0 + S, 9), log("a", W0 + 70 * S, 9)])
    lm.flush()
    late = add(lm, [log("a", W0 + 5 * S, 17)])
    assert len(late) == 1 and "late log record" in late[0].reason


def test_state_round_trip_through_json():
    sm, lm = SpanMetrics(30, 30), LogMetrics(30, 30)
    add(sm, [span("a", W0 + S, 100), span("a", W0 + 2 * S, 300, error=True),
             span("a", W0 + 3 * S, 50, kind=3, **{"peer.service": "b"})])  # fmt: skip
    add(lm, [log("a", W0 + S, 17)])
    sm2, lm2 = SpanMetrics(30, 30), LogMetrics(30, 30)
    sm2.load_state(json.loads(json.dumps(sm.state())))
    lm2.load_state(json.loads(json.dumps(lm.state())))
    for agg, again in ((sm, sm2), (lm, lm2)):
        for a in (agg, again):
            add(a, [span("a", W0 + 65 * S, 10)] if a in (sm, sm2) else [log("a", W0 + 65 * S, 9)])
        assert as_dict(again.flush()) == as_dict(agg.flush())
        assert as_dict(again.flush(final=True)) == as_dict(agg.flush(final=True))


def test_negative_severity_does_not_crash():
    lm = LogMetrics(30, 30)
    assert add(lm, [log("a", W0, -1)]) == []
    assert len(lm.flush(final=True)) == 3


def test_error_templates_become_series_and_a_new_one_is_evidence():
    lm = LogMetrics(30, 30, new_after=3)
    routine = [log("pay", W0 + i * S, 9) for i in range(4)]
    for r in routine:
        r.body = f"GET /pay/{r.ts} 200"
    boom = log("pay", W0 + 10 * S, 17)
    boom.body = "Connection refused to db-7:5432 after 3 retries"
    again = log("pay", W0 + 12 * S, 17)
    again.body = "Connection refused to db-9:5432 after 5 retries"
    add(lm, [*routine, boom, again])
    (new,) = lm.take_new_templates()  # the same template twice is one piece of evidence
    ts, service, tid, text, cls = new
    assert (ts, service, cls) == (W0 + 10 * S, "pay", "ERROR") and "Connection refused" in text
    assert lm.take_new_templates() == []
    out = as_dict(lm.flush(final=True))
    assert out[(f"pay/log.template:rate{{severity=ERROR,template={tid}}}", W0 + 30 * S)] == pytest.approx(2 / 30)
    state = json.loads(json.dumps(lm.state()))
    restored = LogMetrics(30, 30, new_after=3)
    restored.load_state(state)
    assert restored.miners["pay"].add(again.body).template_id == tid
