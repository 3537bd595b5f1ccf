"""Replay files: per-signal JSONL merged in event time, varint-delimited protobuf, truncated tails."""

from __future__ import annotations

import gc
import json
import warnings

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from aiops.ingest.deadletter import MemoryDeadLetter
from aiops.ingest.decode import decode
from aiops.ingest.replay import ReplaySource
from aiops.pipeline import Pipeline

S = 10**9
T0 = 1_700_000_000 * S
RES = {"attributes": [{"key": "service.name", "value": {"stringValue": "cart"}}]}


def metrics_line(ts, value=1.0):
    dp = {"timeUnixNano": str(ts), "asDouble": value}
    metric = {"name": "cpu", "gauge": {"dataPoints": [dp]}}
    return json.dumps({"resourceMetrics": [{"resource": RES, "scopeMetrics": [{"metrics": [metric]}]}]})


def logs_line(ts):
    rec = {"timeUnixNano": str(ts), "severityNumber": 9, "body": {"stringValue": "hello"}}
    return json.dumps({"resourceLogs": [{"resource": RES, "scopeLogs": [{"logRecords": [rec]}]}]})


def traces_line(ts):
    sp = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "GET", "kind": 2, "startTimeUnixNano": str(ts),
          "endTimeUnixNano": str(ts + S // 10)}  # fmt: skip
    return json.dumps({"resourceSpans": [{"resource": RES, "scopeSpans": [{"spans": [sp]}]}]})


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def messages(src):
    return [m for b in src.batches() for m in b]


@pytest.fixture
def feed(tmp_path):
    write_lines(tmp_path / "metrics.jsonl", [metrics_line(T0), "", metrics_line(T0 + 20 * S), metrics_line(T0 + 40 * S)])
    write_lines(tmp_path / "logs.jsonl", [logs_line(T0 + 10 * S), logs_line(T0 + 30 * S)])
    write_lines(tmp_path / "traces.jsonl", [traces_line(T0 + 5 * S), traces_line(T0 + 25 * S)])
    (tmp_path / "README.txt").write_text("not telemetry")
    (tmp_path / "truth.json").write_text(json.dumps({"root_cause": "db"}))
    return tmp_path


def test_directory_merged_in_time_order(feed):
    msgs = messages(ReplaySource([feed], batch_size=3))
    got = [(m.signal, m.source.rsplit("/", 1)[1], m.offset) for m in msgs]
    assert got == [
        ("metrics", "metrics.jsonl", 1),
        ("spans", "traces.jsonl", 1),
        ("logs", "logs.jsonl", 1),
        ("metrics", "metrics.jsonl", 3),  # line numbers count the blank line
        ("spans", "traces.jsonl", 2),
        ("logs", "logs.jsonl", 2),
        ("metrics", "metrics.jsonl", 4),
    ]
    assert {m.format for m in msgs} == {"otlp_json"}
    assert all(m.source.startswith("file:") for m in msgs)
    first_ts = []
    for m in msgs:
        d = decode(m)
        assert not d.rejects
        first_ts.append(min([*d.metrics.ts.tolist(), *(r.ts for r in d.logs), *(s.start_ts for s in d.spans)]))
    assert first_ts == sorted(first_ts)


def test_replay_closes_its_files(feed):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(messages(ReplaySource([feed]))) == 7
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_batch_size(feed):
    assert [len(b) for b in ReplaySource([feed], batch_size=3).batches()] == [3, 3, 1]


def test_pipeline_over_a_replayed_directory(feed):
    dl = MemoryDeadLetter()
    p = Pipeline(dl, lambda inc: None, now_ns=lambda: T0 + 3600 * S)
    for b in ReplaySource([feed]).batches():
        p.process(b)
    p.flush()
    assert dl.rejects == []
    assert (p.stats.messages, p.stats.points, p.stats.logs, p.stats.spans) == (7, 3, 2, 2)


def test_signal_sniffed_from_content_and_native_detected(tmp_path):
    write_lines(tmp_path / "feed-a.jsonl", [logs_line(T0)])
    write_lines(tmp_path / "feed-b.jsonl", [json.dumps({"ts": T0 / S + 1, "service": "a", "metric": "m", "value": 1})])
    msgs = messages(ReplaySource([tmp_path / "feed-a.jsonl", tmp_path / "feed-b.jsonl"]))
    assert [(m.signal, m.format) for m in msgs] == [("logs", "otlp_json"), ("metrics", "native")]
    assert decode(msgs[1]).metrics.keys == ["a/m"]


def test_format_override(tmp_path):
    f = write_lines(tmp_path / "metrics.jsonl", [json.dumps({"ts": 1_700_000_000, "service": "a", "metric": "m", "value": 1})])
    (msg,) = messages(ReplaySource([f], fmt="otlp_json"))
    assert msg.format == "otlp_json"
    assert len(decode(msg).rejects) == 1  # a native line read as OTLP is refused, not guessed


def test_missing_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        ReplaySource([tmp_path / "nope"])


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def proto_request(ts, n_points=1):
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    kv = rm.resource.attributes.add(key="service.name")
    kv.value.string_value = "cart"
    m = rm.scope_metrics.add().metrics.add(name="cpu")
    for i in range(n_points):
        m.gauge.data_points.add(time_unix_nano=ts + i * S, as_double=0.5 + i)
    return req.SerializeToString()


def test_varint_delimited_protobuf(tmp_path):
    payloads = [proto_request(T0), proto_request(T0 + 10 * S, n_points=50), proto_request(T0 + 20 * S)]  # 2nd > 127 bytes
    assert len(payloads[1]) > 127
    f = tmp_path / "metrics.pb"
    f.write_bytes(b"".join(_varint(len(p)) + p for p in payloads))
    msgs = messages(ReplaySource([f]))
    assert [m.payload for m in msgs] == payloads
    assert [(m.signal, m.format, m.offset) for m in msgs] == [("metrics", "otlp_proto", i) for i in (1, 2, 3)]
    assert [len(decode(m).metrics) for m in msgs] == [1, 50, 1]


@pytest.mark.parametrize("cut", [1, 7, 20])
def test_truncated_tail_is_refused(tmp_path, cut):
    payloads = [proto_request(T0), proto_request(T0 + 10 * S)]
    data = b"".join(_varint(len(p)) + p for p in payloads)
    f = tmp_path / "metrics.pb"
    f.write_bytes(data[: len(data) - cut])
    msgs = messages(ReplaySource([f]))
    assert len(msgs) == 2 and msgs[0].payload == payloads[0]
    d = decode(msgs[1])
    assert len(d.rejects) >= 1 and not len(d.metrics)
    dl = MemoryDeadLetter()
    p = Pipeline(dl, lambda inc: None, now_ns=lambda: T0 + 3600 * S)
    p.process(msgs)
    assert p.stats.points == 1
    assert [(r.source, r.offset) for r in dl.rejects] == [(f"file:{f}", 2)] * len(dl.rejects)


def test_interleaved_files_with_unreadable_lines_keep_their_place(tmp_path):
    write_lines(tmp_path / "metrics.jsonl", [metrics_line(T0), "garbage", metrics_line(T0 + 30 * S)])
    write_lines(tmp_path / "logs.jsonl", [logs_line(T0 + 10 * S)])
    got = [(m.source.rsplit("/", 1)[1], m.offset) for m in messages(ReplaySource([tmp_path]))]
    assert got == [("metrics.jsonl", 1), ("metrics.jsonl", 2), ("logs.jsonl", 1), ("metrics.jsonl", 3)]


def native_line(ts, metric="m"):
    return json.dumps({"ts": ts, "service": "a", "metric": metric, "value": 1.0})


def test_native_rfc3339_files_merge_in_time_order(tmp_path):
    write_lines(tmp_path / "a.jsonl", [native_line("2023-11-14T22:13:40Z", "x"), native_line("2023-11-14T22:14:00Z", "x")])
    write_lines(tmp_path / "b.jsonl", [native_line(T0 / S + 10, "y"), native_line(T0 / S + 30, "y")])  # T0 = 22:13:20Z
    keys = [decode(m).metrics.keys[0] for m in messages(ReplaySource([tmp_path]))]
    assert keys == ["a/y", "a/x", "a/y", "a/x"]


def counter_line(ts):
    dp = {"startTimeUnixNano": str(T0 - 3600 * S), "timeUnixNano": str(ts), "asInt": "5"}
    metric = {"name": "requests", "sum": {"isMonotonic": True, "aggregationTemporality": 2, "dataPoints": [dp]}}
    return json.dumps({"resourceMetrics": [{"resource": RES, "scopeMetrics": [{"metrics": [metric]}]}]})


def test_cumulative_counters_merge_by_point_time(tmp_path):
    write_lines(tmp_path / "metrics.jsonl", [counter_line(T0 + 20 * S), counter_line(T0 + 40 * S)])
    write_lines(tmp_path / "logs.jsonl", [logs_line(T0 + 10 * S), logs_line(T0 + 30 * S)])
    got = [m.signal for m in messages(ReplaySource([tmp_path]))]
    assert got == ["logs", "metrics", "logs", "metrics"]
