"""Counters and histograms become rate / mean / percentile gauges."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aiops.ingest.derive import QUANTILES, Deriver, bucket_quantile, with_suffix
from aiops.ingest.records import HistogramPoint, MetricColumns, PointKind

S = 10**9
T = 1_700_000_000 * S
START = T - 100 * S


def points(*rows):
    """rows: (key, ts, value, kind, start_ts)"""
    cols = MetricColumns()
    for key, ts, value, kind, start in rows:
        cols.append(key, key.split("/")[0], ts, value, kind, start)
    return cols.freeze()


def as_dict(batch):
    return {(batch.keys[i], int(batch.ts[i])): float(batch.values[i]) for i in range(len(batch))}


def cum(key, ts, total, start=START):
    return (key, ts, total, PointKind.COUNTER_CUMULATIVE, start)


def delta(key, ts, value, start):
    return (key, ts, value, PointKind.COUNTER_DELTA, start)


def test_with_suffix():
    assert with_suffix("svc/http.requests{a=b,c=d}", ":rate") == "svc/http.requests:rate{a=b,c=d}"
    assert with_suffix("svc/x", ":p99") == "svc/x:p99"


def test_gauges_pass_through_untouched():
    b = points(("a/g", T, 1.5, PointKind.GAUGE, 0), ("a/h", T, -2.0, PointKind.GAUGE, 0))
    assert Deriver().derive(b, []) is b


def test_cumulative_counter_rate_first_point_yields_nothing():
    dv = Deriver()
    assert len(dv.derive(points(cum("a/req{m=GET}", T, 100.0)), [])) == 0
    out = dv.derive(points(cum("a/req{m=GET}", T + 10 * S, 150.0), ("a/g", T + 10 * S, 7.0, PointKind.GAUGE, 0)), [])
    assert as_dict(out) == {("a/g", T + 10 * S): 7.0, ("a/req:rate{m=GET}", T + 10 * S): 5.0}
    assert out.kinds.tolist() == [PointKind.GAUGE] * 2
    out = dv.derive(points(cum("a/req{m=GET}", T + 40 * S, 150.0)), [])
    assert as_dict(out) == {("a/req:rate{m=GET}", T + 40 * S): 0.0}


def test_counter_reset_smaller_total_with_start_time():
    dv = Deriver()
    dv.derive(points(cum("a/c", T, 1000.0)), [])
    # restarted at T+5s (new start time), total now 20 by T+15s: 20 / 10 s
    out = dv.derive(points(cum("a/c", T + 15 * S, 20.0, start=T + 5 * S)), [])
    assert as_dict(out) == {("a/c:rate", T + 15 * S): 2.0}


def test_counter_reset_new_start_even_if_total_larger():
    dv = Deriver()
    dv.derive(points(cum("a/c", T, 10.0)), [])
    out = dv.derive(points(cum("a/c", T + 20 * S, 40.0, start=T + 10 * S)), [])
    assert as_dict(out) == {("a/c:rate", T + 20 * S): 4.0}  # 40 since T+10s, not (40-10)/20


def test_counter_reset_without_start_rebaselines():
    dv = Deriver()
    dv.derive(points(cum("a/c", T, 1000.0, start=0)), [])
    assert len(dv.derive(points(cum("a/c", T + 10 * S, 5.0, start=0)), [])) == 0  # no negative rate
    out = dv.derive(points(cum("a/c", T + 20 * S, 25.0, start=0)), [])
    assert as_dict(out) == {("a/c:rate", T + 20 * S): 2.0}


def test_delta_counter():
    dv = Deriver()
    out = dv.derive(points(delta("a/d", T, 30.0, T - 10 * S)), [])
    assert as_dict(out) == {("a/d:rate", T): 3.0}  # the first delta already has its interval
    out = dv.derive(points(delta("a/d", T + 5 * S, 10.0, 0)), [])  # no start: since the previous point
    assert as_dict(out) == {("a/d:rate", T + 5 * S): 2.0}


def test_delta_counter_without_any_interval_yields_nothing():
    assert len(Deriver().derive(points(delta("a/d", T, 30.0, 0)), [])) == 0


def test_several_counters_in_one_batch():
    dv = Deriver()
    dv.derive(points(cum("a/x", T, 0.0), cum("b/x", T, 100.0)), [])
    out = dv.derive(points(cum("a/x", T + S, 3.0), cum("b/x", T + 2 * S, 110.0)), [])
    assert as_dict(out) == {("a/x:rate", T + S): 3.0, ("b/x:rate", T + 2 * S): 5.0}
    assert out.services == ["a", "b"]


# --- bucket_quantile -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "q, expected",
    [
        (0.1, 0.5),  # rank 1 of 2 in [0, 1]
        (0.5, 1.75),  # rank 5: 3 of 4 into (1, 2]
        (0.6, 2.0),  # rank 6: top of (1, 2]
        (0.7, 3.0),  # rank 7: 1 of 2 into (2, 4]
        (0.9, 4.0),  # +Inf bucket: the largest finite bound
        (0.99, 4.0),
    ],
)
def test_bucket_quantile_hand_computed(q, expected):
    assert bucket_quantile(q, (1.0, 2.0, 4.0), np.array([2, 4, 2, 2])) == pytest.approx(expected)


def test_bucket_quantile_edge_cases():
    assert bucket_quantile(0.5, (1.0, 2.0), np.array([0, 10, 0])) == 1.5
    assert bucket_quantile(0.5, (-1.0, 0.0), np.array([4, 0, 0])) == -1.0  # first bucket at or below zero
    assert np.isnan(bucket_quantile(0.5, (), np.array([5])))


# --- histograms ------------------------------------------------------------------------------
BOUNDS = (0.1, 0.25, 0.5, 1.0)


def hp(ts, counts, total_sum, cumulative=True, start=START, key="a/lat{route=/}"):
    return HistogramPoint(key, "a", ts, start, int(sum(counts)), total_sum, BOUNDS, tuple(counts), cumulative)


def test_cumulative_histogram_rate_mean_percentiles():
    dv = Deriver()
    assert len(dv.derive(points(), [hp(T, [10, 10, 0, 0, 0], 2.0)])) == 0  # first point: nothing
    out = as_dict(dv.derive(points(), [hp(T + 10 * S, [12, 20, 15, 3, 0], 12.0)]))
    d = np.array([2, 10, 15, 3, 0])  # 30 observations this interval, sum 10.0
    ts = T + 10 * S
    assert out[("a/lat:rate{route=/}", ts)] == pytest.approx(3.0)
    assert out[("a/lat:mean{route=/}", ts)] == pytest.approx(10.0 / 30)
    for q in QUANTILES:
        assert out[(f"a/lat:p{round(q * 100)}{{route=/}}", ts)] == pytest.approx(bucket_quantile(q, BOUNDS, d))
    # by hand: p50 rank 15 -> 3 of 15 into (0.25, 0.5]; p90 rank 27 = top of (0.5]... bucket 3 starts at 27
    assert out[("a/lat:p50{route=/}", ts)] == pytest.approx(0.25 + 0.25 * 3 / 15)
    assert out[("a/lat:p90{route=/}", ts)] == pytest.approx(0.5)
    assert out[("a/lat:p99{route=/}", ts)] == pytest.approx(0.5 + 0.5 * (29.7 - 27) / 3)
    assert len(out) == 5


def test_histogram_without_observations_gives_zero_rate_only():
    dv = Deriver()
    dv.derive(points(), [hp(T, [1, 1, 0, 0, 0], 0.3)])
    out = as_dict(dv.derive(points(), [hp(T + 10 * S, [1, 1, 0, 0, 0], 0.3)]))
    assert out == {("a/lat:rate{route=/}", T + 10 * S): 0.0}  # latency undefined, not zero


def test_histogram_without_sum_has_no_mean():
    dv = Deriver()
    dv.derive(points(), [hp(T, [0, 0, 0, 0, 0], None)])
    out = as_dict(dv.derive(points(), [hp(T + 10 * S, [0, 4, 0, 0, 0], None)]))
    assert ("a/lat:mean{route=/}", T + 10 * S) not in out
    assert out[("a/lat:p50{route=/}", T + 10 * S)] == pytest.approx(0.175)


def test_histogram_reset():
    dv = Deriver()
    dv.derive(points(), [hp(T, [100, 100, 0, 0, 0], 50.0)])
    out = as_dict(dv.derive(points(), [hp(T + 20 * S, [0, 0, 10, 0, 0], 4.0, start=T + 10 * S)]))
    assert out[("a/lat:rate{route=/}", T + 20 * S)] == pytest.approx(1.0)  # 10 since the restart 10 s ago
    assert out[("a/lat:mean{route=/}", T + 20 * S)] == pytest.approx(0.4)


def test_delta_histogram():
    out = as_dict(Deriver().derive(points(), [hp(T, [0, 0, 5, 5, 0], 6.0, cumulative=False, start=T - 5 * S)]))
    assert out[("a/lat:rate{route=/}", T)] == pytest.approx(2.0)
    assert out[("a/lat:mean{route=/}", T)] == pytest.approx(0.6)
    assert out[("a/lat:p50{route=/}", T)] == pytest.approx(0.5)


def test_state_round_trip_through_json():
    a = Deriver()
    a.derive(points(cum("a/c", T, 10.0)), [hp(T, [1, 0, 0, 0, 0], 0.05)])
    b = Deriver()
    b.load_state(json.loads(json.dumps(a.state())))
    nxt = (points(cum("a/c", T + S, 12.0)), [hp(T + S, [1, 2, 0, 0, 0], 0.45)])
    assert as_dict(b.derive(*nxt)) == as_dict(a.derive(*nxt))
    assert len(as_dict(b.derive(points(cum("a/c", T + 2 * S, 14.0)), []))) == 1


def test_derived_values_are_finite():
    h = HistogramPoint("a/lat", "a", T, T - 10 * S, 4, 1.0, (1.0, float("inf")), (0, 0, 4), False)
    with np.errstate(all="ignore"):
        out = Deriver().derive(points(), [h])
    assert np.isfinite(out.values).all()
