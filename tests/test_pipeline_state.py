"""Pipeline.snapshot()/restore(): a resumed pipeline behaves exactly like one that never stopped."""

from __future__ import annotations

import io
import json
import struct
from dataclasses import asdict

import numpy as np
import pytest

from aiops.errors import StateError
from aiops.ingest.deadletter import MemoryDeadLetter
from aiops.ingest.records import Message
from aiops.pipeline import Pipeline

S = 10**9
T0 = 1_700_000_000 * S
STEP = 10 * S
N_STEPS = 150
FAULT = 100  # db latency jumps at this step, api follows two steps later
NOW = T0 + 10 * 86_400 * S


def _res(service):
    return {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}


def _otlp_metrics(service, metrics):
    return json.dumps({"resourceMetrics": [{"resource": _res(service), "scopeMetrics": [{"metrics": metrics}]}]}).encode()


def make_stream(seed=11):
    """A small system: gauges (native), a counter and a histogram (OTLP/JSON), spans, logs, a deploy."""
    rng = np.random.default_rng(seed)
    steps, offsets = [], {}
    bounds = [0.01, 0.05, 0.1, 0.5, 1.0]
    hist_counts = np.zeros(len(bounds) + 1, dtype=np.int64)
    hist_sum, requests = 0.0, 0

    def message(signal, fmt, source, payload):
        offsets[source] = offsets.get(source, 0) + 1
        return Message(signal, fmt, payload, source, offsets[source])

    for i in range(N_STEPS):
        t = T0 + i * STEP
        sec = t / S
        faulty_db, faulty_api = i >= FAULT, i >= FAULT + 2
        batch = []
        lines = []
        for svc in ("db", "api", "web"):
            lines.append({"ts": sec, "service": svc, "metric": "cpu", "value": 0.3 + rng.normal(0, 0.01)})
        lines.append({"ts": sec, "service": "db", "metric": "query.duration", "labels": {"q": "select"},
                      "value": (0.5 if faulty_db else 0.05) + rng.normal(0, 0.002)})  # fmt: skip
        lines.append({"ts": sec, "service": "api", "metric": "request.duration",
                      "value": (0.9 if faulty_api else 0.1) + rng.normal(0, 0.003)})  # fmt: skip
        if i == FAULT - 5:
            lines.append({"ts": sec, "service": "db", "event": "deployment", "version": "db-2.0"})
        if i == 60:
            lines.append({"ts": sec, "service": "db", "metric": "cpu", "value": 0.3})  # a duplicate point
        batch.append(message("metrics", "native", "kafka:native/0", b"\n".join(json.dumps(x).encode() for x in lines)))

        requests += int(rng.integers(900, 1100))
        obs = rng.gamma(2.0, 0.02 if not faulty_api else 0.2, size=50)
        hist_counts += np.bincount(np.searchsorted(bounds, obs, side="left"), minlength=len(bounds) + 1)
        hist_sum += float(obs.sum())
        start = str(T0 - 60 * S)
        metrics = [
            {"name": "http.requests", "sum": {"isMonotonic": True, "aggregationTemporality": 2, "dataPoints": [
                {"startTimeUnixNano": start, "timeUnixNano": str(t), "asInt": str(requests)}]}},
            {"name": "http.server.duration", "histogram": {"aggregationTemporality": 2, "dataPoints": [
                {"startTimeUnixNano": start, "timeUnixNano": str(t), "count": str(int(hist_counts.sum())),
                 "sum": hist_sum, "explicitBounds": bounds, "bucketCounts": [str(c) for c in hist_counts]}]}},
        ]  # fmt: skip
        batch.append(message("metrics", "otlp_json", "kafka:otlp_metrics/0", _otlp_metrics("web", metrics)))

        spans = []
        for k in range(4):
            dur = (0.3 if faulty_db else 0.02) * (1 + rng.random())
            end = t + k * S + int(dur * S) + 1
            spans.append(("api", 2, end - int((dur + 0.01) * S), end, faulty_api and k == 0, {}))
            spans.append(("api", 3, end - int(dur * S), end, False, {"peer.service": "db"}))
        if i % 7 == 3:
            spans.append(("api", 2, t - 400 * S, t - 399 * S, False, {}))  # late: its window is closed
        by_service = {}
        for n, (svc, kind, st, en, err, attrs) in enumerate(spans):
            sp = {"traceId": f"{i:016x}{n:016x}", "spanId": f"{n + 1:016x}", "name": "op", "kind": kind,
                  "startTimeUnixNano": str(st), "endTimeUnixNano": str(en),
                  "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()],
                  "status": {"code": 2 if err else 0}}  # fmt: skip
            by_service.setdefault(svc, []).append(sp)
        payload = {"resourceSpans": [{"resource": _res(s), "scopeSpans": [{"spans": v}]} for s, v in by_service.items()]}
        batch.append(message("spans", "otlp_json", "kafka:otlp_spans/0", json.dumps(payload).encode()))

        recs = [{"timeUnixNano": str(t + k * S), "severityNumber": 17 if (faulty_api and k < 3) else 9,
                 "body": {"stringValue": "x"}} for k in range(4)]  # fmt: skip
        logs = {"resourceLogs": [{"resource": _res("api"), "scopeLogs": [{"logRecords": recs}]}]}
        batch.append(message("logs", "otlp_json", "kafka:otlp_logs/0", json.dumps(logs).encode()))
        if i == 30:
            batch.append(message("metrics", "otlp_json", "kafka:otlp_metrics/0", b"{not json"))
        steps.append(batch)
    return steps


STREAM = make_stream()


class Run:
    def __init__(self):
        self.dead = MemoryDeadLetter()
        self.incidents, self.anomalies = [], []
        self.pipeline = self.new()

    def new(self):
        return Pipeline(self.dead, self.incidents.append, self.anomalies.append, now_ns=lambda: NOW)

    def feed(self, steps):
        for batch in steps:
            self.pipeline.process(batch)

    def outputs(self):
        return (
            [i.model_dump() for i in self.incidents],
            [asdict(a) for a in self.anomalies],
            [(r.source, r.offset, r.reason, r.raw) for r in self.dead.rejects],
        )


@pytest.fixture(scope="module")
def uninterrupted():
    run = Run()
    run.feed(STREAM)
    run.pipeline.flush()
    return run


def test_the_stream_exercises_the_whole_pipeline(uninterrupted):
    p = uninterrupted.pipeline
    incidents, anomalies, rejects = uninterrupted.outputs()
    assert anomalies and incidents
    first = next(i for i in uninterrupted.incidents if i.services)
    assert first.root_causes[0].service == "db" and first.suggested_playbook == "rollback"
    assert "deployed db-2.0" in first.root_causes[0].reason
    reasons = {r[2].split(":")[0] for r in rejects}
    assert {"duplicate point", "late span", "invalid OTLP/JSON metrics request"} <= reasons
    assert any(k.startswith("web/http.requests:rate") for k in p.series.keys)
    assert any(k.startswith("web/http.server.duration:p99") for k in p.series.keys)
    assert any(k.startswith("api/span.client:rate{peer=db}") for k in p.series.keys)
    assert any(k.startswith("api/log.records:rate{severity=ERROR}") for k in p.series.keys)


@pytest.mark.parametrize("split", [1, 37, FAULT - 1, FAULT + 1, FAULT + 3, 131])
def test_snapshot_restore_equals_uninterrupted(uninterrupted, split):
    run = Run()
    run.feed(STREAM[:split])
    blob = run.pipeline.snapshot()
    assert isinstance(blob, bytes)
    run.pipeline = run.new()  # a fresh process: nothing but the blob survives
    run.pipeline.restore(blob)
    run.feed(STREAM[split:])
    run.pipeline.flush()
    assert run.outputs() == uninterrupted.outputs()
    assert run.pipeline.stats.summary() == uninterrupted.pipeline.stats.summary()


def test_restored_pipeline_refuses_a_replayed_metric_tail(uninterrupted):
    """At-least-once: after a restore the consumer may see metric messages again; none is learned twice."""
    split = FAULT + 3
    run = Run()
    run.feed(STREAM[:split])
    blob = run.pipeline.snapshot()
    n_rejects = len(run.dead.rejects)
    run.pipeline = run.new()
    run.pipeline.restore(blob)
    replay = [m for batch in STREAM[split - 2 : split] for m in batch if m.signal == "metrics" and m.payload[:1] == b"{"]
    run.pipeline.process(replay)
    refused = run.dead.rejects[n_rejects:]
    assert len(refused) == 2 * 7 and all("duplicate point" in r.reason for r in refused)  # 5 native + 2 OTLP per step
    del run.dead.rejects[n_rejects:]
    run.feed(STREAM[split:])
    run.pipeline.flush()
    assert run.outputs() == uninterrupted.outputs()
    n = len(run.pipeline.series)
    for k, v in uninterrupted.pipeline.bank.state().items():
        np.testing.assert_array_equal(run.pipeline.bank.state()[k][:n], v[:n])


def test_snapshot_is_stable_and_restorable_twice():
    run = Run()
    run.feed(STREAM[:50])
    blob = run.pipeline.snapshot()
    again = run.new()
    again.restore(blob)
    third = run.new()
    third.restore(again.snapshot())
    assert _contents(third.snapshot()) == _contents(blob)


def _npz(**arrays):
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _meta_blob(meta):
    return _npz(meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))


def _snapshot_at(step=20):
    run = Run()
    run.feed(STREAM[:step])
    return run.pipeline.snapshot()


def _with_meta(blob, **changes):
    with np.load(io.BytesIO(blob)) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes()) | changes
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return _npz(**arrays)


def test_garbage_blob_raises_state_error():
    with pytest.raises(StateError):
        Run().pipeline.restore(b"definitely not a snapshot")


def test_wrong_version_raises_state_error():
    with pytest.raises(StateError, match="version"):
        Run().pipeline.restore(_with_meta(_snapshot_at(), version=99))


def test_blob_without_meta_raises_state_error():
    with pytest.raises(StateError):
        Run().pipeline.restore(_npz(x=np.zeros(3)))


def _contents(blob):
    """A snapshot's meaning: its arrays and its JSON document (the zip bytes carry timestamps).

    Arrays compare as JSON text, where NaN (no value yet) equals NaN."""
    with np.load(io.BytesIO(blob)) as z:
        arrays = {k: json.dumps(z[k].tolist()) for k in z.files if k != "meta"}
        return arrays, json.loads(z["meta"].tobytes())


def _flip_in_first_member(blob):
    name_len, extra_len = struct.unpack("<HH", blob[26:30])
    i = 30 + name_len + extra_len + 5  # inside the first member's compressed data
    return blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1 :]


CORRUPTIONS = {
    "empty": lambda b: b"",
    "truncated-half": lambda b: b[: len(b) // 2],
    "truncated-tail": lambda b: b[:-10],
    "flipped-byte": _flip_in_first_member,
    "meta-missing-keys": lambda b: _meta_blob({"version": 1}),
    "meta-not-an-object": lambda b: _meta_blob([1, 2]),
}


@pytest.mark.parametrize("corrupt", sorted(CORRUPTIONS))
def test_corrupted_blob_raises_state_error(corrupt):
    blob = CORRUPTIONS[corrupt](_snapshot_at())
    with pytest.raises(StateError):
        Run().pipeline.restore(blob)


def test_failed_restore_leaves_the_pipeline_unchanged():
    run = Run()
    run.feed(STREAM[:40])
    before = _contents(run.pipeline.snapshot())
    broken = _with_meta(_snapshot_at(10))
    with np.load(io.BytesIO(broken)) as z:  # drop the last section the restore reads
        arrays = {k: z[k] for k in z.files if not k.startswith("episodes.")}
    try:
        run.pipeline.restore(_npz(**arrays))
    except Exception:  # noqa: BLE001 - which error is the other test's business
        pass
    assert _contents(run.pipeline.snapshot()) == before


def test_one_bogus_span_end_does_not_make_later_spans_late():
    run = Run()
    run.feed(STREAM[:20])
    t = T0 + 20 * STEP
    bogus = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "op", "kind": 2,
             "startTimeUnixNano": str(t), "endTimeUnixNano": str(t + 10**6 * S)}  # fmt: skip
    payload = json.dumps({"resourceSpans": [{"resource": _res("api"), "scopeSpans": [{"spans": [bogus]}]}]}).encode()
    run.pipeline.process([Message("spans", "otlp_json", payload, "kafka:otlp_spans/0", 10_000)])
    n_before = len(run.dead.rejects)
    run.feed(STREAM[21:40])
    late = [r for r in run.dead.rejects[n_before:] if r.reason.startswith(("late", "timestamp too far"))]
    assert len(late) <= 3  # the stream's own late spans, not every span after the bogus one
