"""Property tests: no input makes ingest raise, and nothing is silently lost."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiops.detect.bank import BankConfig, DetectorBank
from aiops.detect.series import rounds
from aiops.ingest.deadletter import MemoryDeadLetter
from aiops.ingest.decode import decode
from aiops.ingest.derive import bucket_quantile
from aiops.ingest.records import WIRE_FORMATS, Decoded, Message, MetricColumns, PointKind
from aiops.ingest.validate import ValidationPolicy, Validator
from aiops.pipeline import Pipeline

S = 10**9
T0 = 1_700_000_000 * S
STEP = 10 * S
NOW = T0 + 86_400 * S
SIGNALS = ("metrics", "logs", "spans")
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def n_rows(d: Decoded) -> int:
    return len(d.metrics) + len(d.histograms) + len(d.logs) + len(d.spans) + len(d.changes) + d.no_value_points


def check_rejects(d: Decoded) -> None:
    for r in d.rejects:
        assert r.reason and isinstance(r.raw, bytes)
        line = json.loads(r.to_json())
        assert set(line) >= {"source", "offset_or_line", "reason", "raw"}


# --- random bytes ----------------------------------------------------------------------------
@SETTINGS
@given(payload=st.binary(max_size=400), fmt=st.sampled_from(WIRE_FORMATS), signal=st.sampled_from(SIGNALS))
def test_random_bytes_never_raise_and_nothing_silently_lost(payload, fmt, signal):
    d = decode(Message(signal, fmt, payload, "prop", 1))
    check_rejects(d)
    if n_rows(d) == 0 and not (fmt == "native" and not payload.strip()):
        assert d.rejects, "input neither decoded nor refused"


OTLP_WORDS = ["resourceMetrics", "resourceLogs", "resourceSpans", "resource", "attributes", "key", "value",
              "stringValue", "intValue", "doubleValue", "scopeMetrics", "scopeLogs", "scopeSpans", "metrics", "name",
              "gauge", "sum", "histogram", "summary", "dataPoints", "asDouble", "asInt", "timeUnixNano", "logRecords",
              "spans", "traceId", "spanId", "kind", "service.name", "flags", "ts", "service", "metric", "message",
              "labels", "level", "event", "version"]  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(OTLP_WORDS + ["NaN", "Infinity", "", "deployment", "ab" * 8]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(OTLP_WORDS), children, max_size=4),
    max_leaves=20,
)  # ints reach past int64 on purpose: such times and counts must be refused, not overflow


@SETTINGS
@given(doc=json_values, fmt=st.sampled_from(["otlp_json", "native"]), signal=st.sampled_from(SIGNALS))
def test_random_json_never_raises(doc, fmt, signal):
    payload = json.dumps(doc).encode()
    d = decode(Message(signal, fmt, payload, "prop", 1))
    check_rejects(d)
    if not isinstance(doc, dict):
        assert d.rejects and n_rows(d) == 0  # a request is an object, so is a native line


# --- mutated valid OTLP/JSON through the whole pipeline --------------------------------------
def _res(service):
    return {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}


def base_docs(i):
    t = T0 + i * STEP
    start = str(T0 - 60 * S)
    dp = {"startTimeUnixNano": start, "timeUnixNano": str(t)}
    metrics = {"resourceMetrics": [{"resource": _res("cart"), "scopeMetrics": [{"metrics": [
        {"name": "cpu", "gauge": {"dataPoints": [dict(dp, asDouble=0.5 + 0.01 * (i % 3),
                                                      attributes=[{"key": "core", "value": {"intValue": "1"}}])]}},
        {"name": "requests", "sum": {"isMonotonic": True, "aggregationTemporality": 2,
                                     "dataPoints": [dict(dp, asInt=str(1000 * i + 7 * (i % 4)))]}},
        {"name": "latency", "histogram": {"aggregationTemporality": 2, "dataPoints": [dict(
            dp, count=str(10 * i), sum=0.1 * i + 0.01 * (i % 2), explicitBounds=[0.01, 0.1, 1.0],
            bucketCounts=[str(3 * i), str(5 * i + i % 2), str(2 * i - i % 2), "0"])]}},
        {"name": "rpc", "summary": {"dataPoints": [dict(dp, count=str(5 * i), sum=1.0 * i,
                                                        quantileValues=[{"quantile": 0.99, "value": 0.2}])]}},
    ]}]}]}  # fmt: skip
    logs = {"resourceLogs": [{"resource": _res("cart"), "scopeLogs": [{"logRecords": [
        {"timeUnixNano": str(t), "severityNumber": 9, "body": {"stringValue": "ok"}},
        {"timeUnixNano": str(t + S), "severityNumber": 17, "body": {"stringValue": "bad"}, "traceId": "ab" * 16},
        {"timeUnixNano": str(t + 2 * S), "attributes": [{"key": "event.name", "value": {"stringValue": "deployment"}},
                                                        {"key": "service.version", "value": {"stringValue": "2"}}]},
    ]}]}]}  # fmt: skip
    spans = {"resourceSpans": [{"resource": _res("cart"), "scopeSpans": [{"spans": [
        {"traceId": f"{i:032x}", "spanId": f"{1:016x}", "name": "GET", "kind": 2, "startTimeUnixNano": str(t),
         "endTimeUnixNano": str(t + S // 10), "status": {"code": 2 if i % 5 == 0 else 0}},
        {"traceId": f"{i:032x}", "spanId": f"{2:016x}", "parentSpanId": f"{1:016x}", "name": "db", "kind": 3,
         "startTimeUnixNano": str(t), "endTimeUnixNano": str(t + S // 20),
         "attributes": [{"key": "peer.service", "value": {"stringValue": "db"}}]},
    ]}]}]}  # fmt: skip
    return {"metrics": metrics, "logs": logs, "spans": spans}


def warm_blob(steps=30):
    p = Pipeline(MemoryDeadLetter(), lambda inc: None, now_ns=lambda: NOW)
    for i in range(1, steps + 1):
        p.process([Message(sig, "otlp_json", json.dumps(doc).encode(), f"kafka:{sig}/0", i)
                   for sig, doc in base_docs(i).items()])  # fmt: skip
    assert len(p.series) > 10 and not p.dead_letter.rejects
    return p.snapshot()


WARM = warm_blob()
NEXT = 31


def warm_pipeline():
    p = Pipeline(MemoryDeadLetter(), lambda inc: None, now_ns=lambda: NOW)
    p.restore(WARM)
    return p


def all_paths(doc, prefix=()):
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += all_paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += all_paths(v, (*prefix, i))
    return out


def mutate(doc, path, op, value):
    if not path:
        return value if op == "replace" else {}
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    if op == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


SAFE_VALUES = [None, "", "abc", "ffff", "-1", "-5", -5, 0, 1, 2**62, str(2**62), -(2**62), 1.5, -0.0, True, False,
               [], {}, [1], {"a": 1}, "SPAN_KIND_SERVER", "AGGREGATION_TEMPORALITY_DELTA", "1e3", " 7 ", "0x10"]  # fmt: skip
# Non-finite strings, huge floats and out-of-int64 numbers must all be refused, never reach a detector.
EXTREME_VALUES = SAFE_VALUES + ["NaN", "Infinity", "-Infinity", 1e300, -1e300, 1e100, str(2**64 - 1), 2**63, -1]


NUMERIC_KEYS = {"timeUnixNano", "startTimeUnixNano", "endTimeUnixNano", "observedTimeUnixNano", "asDouble", "asInt",
                "count", "sum", "bucketCounts", "explicitBounds", "quantile", "value", "kind", "code", "severityNumber",
                "flags", "aggregationTemporality", "isMonotonic", "intValue", "doubleValue", "traceId", "spanId"}  # fmt: skip


def _generated():
    ints = st.integers(-(2**70), 2**70)
    floats = st.floats(allow_nan=True, allow_infinity=True)
    scalars = ints | floats | st.text(max_size=6) | st.booleans() | st.none()
    return scalars | scalars.map(str)


@st.composite
def mutations(draw):
    rnd = draw(st.randoms(use_true_random=False))  # uniform picks: hypothesis' own draws favour the first items
    signal = rnd.choice(SIGNALS)
    doc = base_docs(NEXT)[signal]
    for _ in range(rnd.randint(1, 4)):
        paths = all_paths(doc)
        targeted = [p for p in paths if any(k in NUMERIC_KEYS for k in p[-2:] if isinstance(k, str))]
        path = rnd.choice(targeted if targeted and rnd.random() < 0.6 else paths)
        op = rnd.choice(["delete", "replace", "replace"])
        value = rnd.choice(EXTREME_VALUES) if rnd.random() < 0.6 else draw(_generated())
        doc = mutate(doc, path, op, copy.deepcopy(value))
    return signal, doc


def run_pipeline(signal, doc):
    payload = json.dumps(doc).encode()
    d = decode(Message(signal, "otlp_json", payload, f"kafka:{signal}/0", NEXT))
    check_rejects(d)
    Validator(now_ns=lambda: NOW).validate(d, f"kafka:{signal}/0", NEXT)
    check_rejects(d)
    p = warm_pipeline()
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # overflow or NaN in a detector fails too
        p.process([Message(signal, "otlp_json", payload, f"kafka:{signal}/0", NEXT)])
        p.process([Message(sig, "otlp_json", json.dumps(doc).encode(), f"kafka:{sig}/0", NEXT + 1)
                   for sig, doc in base_docs(NEXT + 1).items()])  # fmt: skip
        p.flush()
    n = len(p.series)
    state = p.bank.state()
    assert all(np.isfinite(state[k][:n]).all() for k in ("mean", "vmean", "vsq", "hi", "lo", "res_hi"))


@SETTINGS
@given(mutation=mutations())
def test_mutated_otlp_json_never_raises_through_the_pipeline(mutation):
    run_pipeline(*mutation)


def _set(signal, path, value):
    return signal, mutate(base_docs(NEXT)[signal], path, "replace", value)


_HIST = ("resourceMetrics", 0, "scopeMetrics", 0, "metrics", 2, "histogram", "dataPoints", 0)
_GAUGE = ("resourceMetrics", 0, "scopeMetrics", 0, "metrics", 0, "gauge", "dataPoints", 0)
_SPAN = ("resourceSpans", 0, "scopeSpans", 0, "spans", 0)
_LOG = ("resourceLogs", 0, "scopeLogs", 0, "logRecords", 0)
REGRESSIONS = {
    "gauge-time-beyond-int64": _set("metrics", (*_GAUGE, "timeUnixNano"), str(2**64 - 1)),
    "bucket-count-beyond-int64": _set("metrics", (*_HIST, "bucketCounts", 0), str(2**63)),
    "infinite-explicit-bound": _set("metrics", (*_HIST, "explicitBounds", 2), "Infinity"),
    "nan-explicit-bound": _set("metrics", (*_HIST, "explicitBounds", 0), "NaN"),
    "huge-histogram-sum": _set("metrics", (*_HIST, "sum"), 1e300),
    "span-end-beyond-int64": _set("spans", (*_SPAN, "endTimeUnixNano"), str(2**64 - 1)),
    "negative-severity": _set("logs", (*_LOG, "severityNumber"), -1),
}


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_inputs_that_once_crashed_the_pipeline_are_refused(case):
    run_pipeline(*REGRESSIONS[case])


# --- validator, rounds, quantiles ------------------------------------------------------------
@SETTINGS
@given(
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=60),
    offsets=st.lists(st.integers(-3, 3), min_size=60, max_size=60),
    max_abs=st.sampled_from([1e100, 1e6, 1.0]),
)
def test_validator_accepts_only_finite_bounded_in_order(values, offsets, max_abs):
    cols = MetricColumns()
    for i, v in enumerate(values):
        cols.append(f"s/m{i % 3}", "s", T0 + offsets[i] * S, v, PointKind.GAUGE, 0)
    d = Validator(ValidationPolicy(max_abs_value=max_abs), now_ns=lambda: NOW).validate(Decoded(metrics=cols.freeze()), "p", 1)
    m = d.metrics
    assert np.isfinite(m.values).all() and (np.abs(m.values) <= max_abs).all()
    assert len(m) + len(d.rejects) == len(values)
    for key in set(m.keys):
        ts = [int(t) for k, t in zip(m.keys, m.ts, strict=True) if k == key]
        assert all(a < b for a, b in zip(ts, ts[1:], strict=False))
    ok_in = [(f"s/m{i % 3}", v) for i, v in enumerate(values) if math.isfinite(v) and abs(v) <= max_abs]
    assert all((k, float(v)) in ok_in for k, v in zip(m.keys, m.values, strict=True))  # accepted values untouched


@SETTINGS
@given(ids=st.lists(st.integers(0, 6), max_size=50), seed=st.integers(0, 2**16))
def test_rounds_partition_and_batch_equals_loop(ids, seed):
    ids = np.array(ids, dtype=np.int64)
    rs = rounds(ids)
    seen = np.concatenate(rs) if rs else np.array([], dtype=np.int64)
    assert sorted(seen.tolist()) == list(range(len(ids)))
    for r in rs:
        assert len(set(ids[r].tolist())) == len(r)
    pos = {int(i): n for n, r in enumerate(rs) for i in r}
    for sid in set(ids.tolist()):
        rows = np.flatnonzero(ids == sid).tolist()
        assert [pos[i] for i in rows] == sorted(pos[i] for i in rows) and len({pos[i] for i in rows}) == len(rows)
    x = np.random.default_rng(seed).normal(10, 3, len(ids)) * np.where(np.arange(len(ids)) % 9 == 8, 10, 1)
    ts = T0 + np.arange(len(ids), dtype=np.int64) * STEP
    a, b = DetectorBank(BankConfig(warmup=2)), DetectorBank(BankConfig(warmup=2))
    looped, batched = np.empty(len(ids)), np.empty(len(ids))
    for k in range(len(ids)):
        looped[k] = a.update(ids[k : k + 1], ts[k : k + 1], x[k : k + 1])[0][0]
    for r in rs:
        batched[r] = b.update(ids[r], ts[r], x[r])[0]
    np.testing.assert_allclose(batched, looped, rtol=0, atol=1e-12)
    assert ((looped >= 0) & (looped <= 1)).all()


@SETTINGS
@given(
    bounds=st.lists(st.floats(0.001, 1e6), min_size=1, max_size=8, unique=True).map(sorted),
    data=st.data(),
)
def test_bucket_quantile_monotone_and_bounded(bounds, data):
    counts = np.array(data.draw(st.lists(st.integers(0, 1000), min_size=len(bounds) + 1, max_size=len(bounds) + 1)))
    if counts.sum() == 0:
        counts[0] = 1
    qs = [bucket_quantile(q, tuple(bounds), counts) for q in (0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)]
    assert all(0.0 <= v <= bounds[-1] * (1 + 1e-12) for v in qs)
    assert all(a <= b * (1 + 1e-12) for a, b in zip(qs, qs[1:], strict=False))
