"""Point-level validation: what may reach a detector, and the reason for everything else."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aiops.ingest.records import ChangeEvent, Decoded, HistogramPoint, LogRecord, MetricColumns, PointKind, Span
from aiops.ingest.validate import MIN_TS_NS, ValidationPolicy, Validator

S = 10**9
NOW = 1_700_000_000 * S
T = NOW - 600 * S  # comfortably in the past


def batch(*points):
    """points: (key, ts, value)"""
    cols = MetricColumns()
    for key, ts, value in points:
        cols.append(key, key.split("/")[0], ts, value, PointKind.GAUGE, 0)
    return Decoded(metrics=cols.freeze())


def validator(**policy):
    return Validator(ValidationPolicy(**policy), now_ns=lambda: NOW)


def run(v, *points):
    return v.validate(batch(*points), "kafka:m/0", 41)


def accepted(d):
    m = d.metrics
    return [(m.keys[i], int(m.ts[i]), float(m.values[i])) for i in range(len(m))]


def reasons(d):
    return [r.reason for r in d.rejects]


@pytest.mark.parametrize(
    "value, why",
    [
        (float("nan"), "non-finite value nan"),
        (float("inf"), "non-finite value inf"),
        (float("-inf"), "non-finite value -inf"),
        (1.5e100, "out of range"),
        (-1e101, "out of range"),
    ],
)
def test_bad_values_refused_with_reason(value, why):
    d = run(validator(), ("a/m", T, 1.0), ("a/bad", T, value), ("a/m", T + S, 2.0))
    assert accepted(d) == [("a/m", T, 1.0), ("a/m", T + S, 2.0)]
    assert len(d.rejects) == 1 and why in d.rejects[0].reason
    r = d.rejects[0]
    assert (r.source, r.offset) == ("kafka:m/0", 41)
    assert json.loads(r.raw)["series"] == "a/bad" and json.loads(r.raw)["ts_unix_nano"] == T


def test_largest_allowed_values_accepted():
    d = run(validator(), ("a/x", T, 1e100), ("a/y", T, -1e100), ("a/z", T, 0.0))
    assert len(d.metrics) == 3 and not d.rejects


def test_accepted_points_untouched_and_in_order():
    pts = [("a/m", T + i * S, float(i) * 1.1) for i in range(5)] + [("b/m", T + i * S, -float(i)) for i in range(5)]
    d = run(validator(), *pts)
    assert accepted(d) == pts
    assert d.metrics.kinds.tolist() == [PointKind.GAUGE] * 10


@pytest.mark.parametrize(
    "ts, why",
    [
        (0, "missing timestamp"),
        (-5, "missing timestamp"),
        (MIN_TS_NS - 1, "before 2000"),
        (NOW + 301 * S, "in the future"),
    ],
)
def test_bad_timestamps(ts, why):
    d = run(validator(), ("a/m", ts, 1.0), ("a/n", T, 1.0))
    assert accepted(d) == [("a/n", T, 1.0)]
    assert len(d.rejects) == 1 and why in reasons(d)[0]


def test_future_bound_uses_injected_clock():
    clock = [NOW]
    v = Validator(now_ns=lambda: clock[0])
    assert not run(v, ("a/m", NOW + 299 * S, 1.0)).rejects
    assert "future" in reasons(run(v, ("a/m", NOW + 400 * S, 1.0)))[0]
    clock[0] = NOW + 200 * S
    assert not run(v, ("a/m", NOW + 400 * S, 1.0)).rejects


def test_first_accepted_point_of_2000_is_fine():
    d = run(validator(), ("a/m", MIN_TS_NS, 1.0))
    assert len(d.metrics) == 1


def test_late_vs_watermark():
    v = validator(max_lateness_s=3600)
    run(v, ("a/m", T, 1.0))
    assert v.watermark == T
    d = run(v, ("b/m", T - 3601 * S, 1.0), ("c/m", T - 3599 * S, 1.0))
    assert accepted(d) == [("c/m", T - 3599 * S, 1.0)]
    assert "late" in reasons(d)[0]
    assert v.watermark == T  # an older accepted point does not move the watermark back


def test_rejected_points_do_not_move_the_watermark():
    v = validator()
    run(v, ("a/m", T, 1.0), ("a/m", NOW + 10**6 * S, 1.0), ("a/n", T + S, float("nan")))
    assert v.watermark == T


def test_duplicates_and_out_of_order_in_one_batch():
    d = run(validator(), ("a/m", T, 1.0), ("a/m", T, 9.0), ("a/m", T - S, 9.0), ("a/m", T + S, 2.0), ("b/m", T - S, 3.0))
    assert accepted(d) == [("a/m", T, 1.0), ("a/m", T + S, 2.0), ("b/m", T - S, 3.0)]  # per series, not global
    assert len(d.rejects) == 2
    assert all("duplicate" in r for r in reasons(d))
    assert any("out-of-order" in r for r in reasons(d))


def test_duplicates_and_out_of_order_across_batches():
    v = validator()
    run(v, ("a/m", T, 1.0), ("a/m", T + S, 2.0))
    d = run(v, ("a/m", T + S, 2.0), ("a/m", T, 1.0), ("a/m", T + 2 * S, 3.0))
    assert accepted(d) == [("a/m", T + 2 * S, 3.0)]
    assert len(d.rejects) == 2 and all("duplicate" in r for r in reasons(d))
    assert "out-of-order" in reasons(d)[1]


def test_rejected_value_does_not_block_a_good_point_at_the_same_time():
    v = validator()
    d = run(v, ("a/m", T, float("nan")), ("a/m", T, 1.0))
    assert accepted(d) == [("a/m", T, 1.0)]


def hist(ts, key="a/h", s=1.0):
    return HistogramPoint(key, "a", ts, T - 60 * S, 2, s, (1.0,), (1, 1), True)


def test_histograms_checked_for_time_order_and_sum():
    v = validator()
    d = v.validate(Decoded(histograms=[hist(T), hist(T), hist(T - S), hist(0), hist(T + S, s=float("nan")), hist(T + 2 * S)]),
                   "s", 1)  # fmt: skip
    assert [h.ts for h in d.histograms] == [T, T + 2 * S]
    assert reasons(d) == ["duplicate point", "out-of-order or duplicate point (older than the series' last accepted point)",
                          "missing timestamp", "histogram sum nan is non-finite or out of range"]  # fmt: skip
    assert v.watermark == T + 2 * S


def test_histogram_sum_beyond_max_abs_value_refused():
    d = validator().validate(Decoded(histograms=[hist(T, s=1e300)]), "s", 1)
    assert not d.histograms and "out of range" in d.rejects[0].reason


def span(start, end, name="s"):
    return Span("0" * 32, "0" * 16, "", "a", name, 2, start, end, False, {})


def test_logs_spans_changes_checked_for_time_only():
    v = validator()
    d = Decoded(
        logs=[LogRecord(T, "a", 9, "INFO", "x", {}), LogRecord(T, "a", 9, "INFO", "dup is fine", {}),
              LogRecord(0, "a", 9, "INFO", "", {})],
        spans=[span(T, T + S), span(NOW + 10**4 * S, NOW + 10**4 * S + 1, "future")],
        changes=[ChangeEvent(T, "a", "deployment", "1", {}), ChangeEvent(MIN_TS_NS - 1, "a", "deployment", "0", {})],
    )
    out = v.validate(d, "s", 1)
    assert [r.body for r in out.logs] == ["x", "dup is fine"]
    assert [s.name for s in out.spans] == ["s"]
    assert [c.version for c in out.changes] == ["1"]
    assert sorted(reasons(out)) == ["missing timestamp", "timestamp before 2000-01-01", "timestamp in the future"]
    assert json.loads([r for r in out.rejects if "future" in r.reason][0].raw)["name"] == "future"


def test_span_ending_in_the_future_refused():
    out = validator().validate(Decoded(spans=[span(T, NOW + 10**9 * S)]), "s", 1)
    assert not out.spans and "future" in out.rejects[0].reason


def test_lateness_is_judged_per_source():
    v = validator()
    v.validate(batch(("a/m", T, 1.0)), "kafka:m/0", 1)
    d = v.validate(batch(("b/m", T - 4000 * S, 1.0)), "kafka:m/1", 1)  # a partition consumed behind the other
    assert len(d.metrics) == 1
    d = v.validate(batch(("c/m", T - 4000 * S, 1.0)), "kafka:m/0", 2)
    assert "late" in reasons(d)[0]
    assert v.watermark == T


def test_accepted_logs_and_spans_move_the_watermark():
    v = validator()
    v.validate(Decoded(logs=[LogRecord(T, "a", 9, "INFO", "x", {})]), "s", 1)
    assert v.watermark == T
    v.validate(Decoded(spans=[span(T, T + 5 * S)]), "s", 2)
    assert v.watermark == T + 5 * S
    d = v.validate(batch(("a/m", T + 5 * S - 3601 * S, 1.0), ("b/m", T + 5 * S - 3599 * S, 1.0)), "s", 3)
    assert accepted(d) == [("b/m", T + 5 * S - 3599 * S, 1.0)] and "late" in reasons(d)[0]


def test_state_round_trip_keeps_dedup():
    v = validator()
    run(v, ("a/m", T, 1.0), ("b/m", T + S, 1.0))
    w = validator()
    w.load_state(json.loads(json.dumps(v.state())))
    assert w.watermark == T + S
    d = run(w, ("a/m", T, 1.0), ("b/m", T + 2 * S, 1.0))
    assert accepted(d) == [("b/m", T + 2 * S, 1.0)] and reasons(d) == ["duplicate point"]


def test_empty_batch_passes_through():
    d = run(validator())
    assert len(d.metrics) == 0 and not d.rejects


def test_accepted_values_are_finite_and_bounded_random():
    rng = np.random.default_rng(3)
    values = rng.choice([np.nan, np.inf, -np.inf, 1e101, -1e200, 0.0, 1.0, -3.5, 1e100], size=500)
    keys = [f"s{i % 7}/m" for i in range(500)]
    ts = T + rng.integers(-5, 5, size=500) * S
    d = run(validator(), *zip(keys, ts.tolist(), values.tolist(), strict=True))
    assert np.isfinite(d.metrics.values).all() and (np.abs(d.metrics.values) <= 1e100).all()
    assert len(d.metrics) + len(d.rejects) == 500
    for key in set(d.metrics.keys):
        t = [int(x) for k, x in zip(d.metrics.keys, d.metrics.ts, strict=True) if k == key]
        assert t == sorted(set(t))  # strictly increasing per series


def test_an_oversized_dead_letter_keeps_its_head_and_says_so() -> None:
    """A refused 2 MB record of binary garbage must not stop the service (the producer refuses
    requests over 1 MiB): its letter carries the head, the full size and the digest."""
    import hashlib
    import json
    import os

    from aiops.ingest.deadletter import KafkaDeadLetter
    from aiops.ingest.records import Reject

    class Producer:
        def __init__(self) -> None:
            self.sent: list[bytes] = []

        def send(self, topic: str, key: bytes, value: bytes) -> None:
            self.sent.append(value)

    raw = os.urandom(2_000_000)
    producer = Producer()
    KafkaDeadLetter(producer, max_bytes=900_000).write([Reject("kafka:m/0", 7, "undecodable protobuf", raw),
                                                        Reject("kafka:m/0", 8, "empty message", b"")])  # fmt: skip
    big, small = (json.loads(v) for v in producer.sent)
    assert len(producer.sent[0]) <= 900_000
    assert big["offset_or_line"] == 7 and big["reason"].startswith("undecodable protobuf")
    assert "2000000 bytes" in big["reason"] and hashlib.sha256(raw).hexdigest() in big["reason"]
    assert raw.startswith(bytes.fromhex(big["raw"]))
    assert small == {"source": "kafka:m/0", "offset_or_line": 8, "reason": "empty message", "raw": "", "raw_encoding": "utf-8"}
