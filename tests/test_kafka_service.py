"""``aiops run`` against a real Apache Kafka broker: mixed formats, dead letters, SIGKILL, groups.

Each test produces simulator telemetry to real topics (metrics keyed by service, as the
Collector partitions them), runs the real CLI as a subprocess and reads back what it stored
(SQLite) and what it refused (the dead-letter topic). The reference for "processed correctly" is
the same messages run through the embedded pipeline in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.protobuf import json_format
from kafka import KafkaConsumer
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from service_harness import (_anomaly_keys, _committed, _env, _produce, _reference, _reference_anomalies,
                             _restored, _start, _stop, _wait)  # fmt: skip

from aiops.service import CHECKPOINT
from aiops.sim import FaultSpec, Simulator
from aiops.store.sqlite import Store

pytestmark = pytest.mark.kafka

GARBAGE = [b"\x00\x01not a protobuf or json\xff", b'{"resourceMetrics": "not a list"}', b"{truncated"]


def _feed(minutes: float = 40.0) -> list:
    """Simulated telemetry with a latency fault: enough for warm-up, anomalies and an incident."""
    start = time.time_ns() - int(3 * 3600 * 1e9)
    sim = Simulator(n_services=5, seed=7, start_unix_nano=start,
                    faults=[FaultSpec(service="postgres", kind="latency", start=900, duration=600)])  # fmt: skip
    return list(sim.run(minutes * 60))


def _sends(prefix: str, feed: list, partitions: int, garbage_every: int = 0) -> tuple[list, list[bytes]]:
    """Metrics of the first half of the services as JSON, the rest as protobuf; logs and spans JSON.

    Each service's metrics go to one partition (as keyed partitioning would), spread so that every
    partition holds some; garbage goes to partition 0.
    """
    services = sorted({m.key for m in feed if m.key})
    proto_services = set(services[len(services) // 2 :])
    part = {s: (i % len(proto_services) if s in proto_services else i) % partitions for i, s in enumerate(services)}
    sends, garbage = [], []
    for i, m in enumerate(feed):
        if m.kind == "metrics":
            if m.key in proto_services:
                body = json_format.Parse(m.payload, ExportMetricsServiceRequest()).SerializeToString()
                sends.append((f"{prefix}-metrics-proto", m.key.encode(), body, part[m.key]))
            else:
                sends.append((f"{prefix}-metrics-json", m.key.encode(), m.payload, part[m.key]))
        else:
            sends.append((f"{prefix}-{m.kind}", None, m.payload, None))
        if garbage_every and i % garbage_every == 0:
            g = GARBAGE[len(garbage) % len(GARBAGE)]
            topic = f"{prefix}-metrics-proto" if len(garbage) % 2 else f"{prefix}-metrics-json"
            sends.append((topic, b"garbage", g, 0))
            garbage.append(g)
    return sends, garbage


def _create(broker, prefix: str, partitions: int) -> None:  # type: ignore[no-untyped-def]
    broker.create_topics([f"{prefix}-metrics-json", f"{prefix}-metrics-proto"], partitions=partitions)
    broker.create_topics([f"{prefix}-logs", f"{prefix}-spans", f"{prefix}-deadletter"], partitions=1)


def test_mixed_stream_processed_and_garbage_dead_lettered(kafka_broker, unique_topic_prefix, tmp_path):
    prefix = unique_topic_prefix
    _create(kafka_broker, prefix, partitions=2)
    feed = _feed()
    sends, garbage = _sends(prefix, feed, 2, garbage_every=97)
    ends = _produce(kafka_broker.bootstrap, sends)
    log = tmp_path / "run.log"
    env = _env(kafka_broker.bootstrap, prefix, tmp_path / "data")
    proc = _start(env, log)
    try:
        telemetry = {k: v for k, v in ends.items() if "deadletter" not in k}
        _wait(lambda: _committed(kafka_broker.bootstrap, f"{prefix}-group") == telemetry, 180,
              "all offsets committed", [proc])  # fmt: skip
    finally:
        _stop(proc, log)

    got, ref = _restored(tmp_path / "data"), _reference(feed)
    assert got.stats.messages == len(sends)
    assert got.stats.points == ref.stats.points > 0
    assert got.stats.spans == ref.stats.spans > 0 and got.stats.logs == ref.stats.logs > 0
    assert got.stats.rejects == len(garbage) == ref.stats.rejects + len(garbage)
    assert ref.stats.anomalies > 0
    assert sorted(_anomaly_keys(tmp_path / "data")) == sorted(
        (a.series, a.first_seen) for a in _reference_anomalies(feed)
    )

    with KafkaConsumer(f"{prefix}-deadletter", bootstrap_servers=kafka_broker.bootstrap,
                       auto_offset_reset="earliest", consumer_timeout_ms=5000) as c:  # fmt: skip
        letters = [json.loads(r.value) for r in c]
    assert len(letters) == len(garbage)
    assert all(r["reason"] and r["source"].startswith(f"kafka:{prefix}-metrics-") for r in letters)
    raws = sorted(bytes.fromhex(r["raw"]) if r["raw_encoding"] == "hex" else r["raw"].encode() for r in letters)
    assert raws == sorted(garbage)


def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(kafka_broker, unique_topic_prefix, tmp_path):
    prefix = unique_topic_prefix
    _create(kafka_broker, prefix, partitions=2)
    feed = _feed(minutes=50)
    sends, _ = _sends(prefix, feed, 2)
    ends = _produce(kafka_broker.bootstrap, sends)
    total = sum(ends.values())
    log, data = tmp_path / "run.log", tmp_path / "data"
    # Small polls and frequent checkpoints, so the kill lands between checkpoints mid-stream.
    env = _env(kafka_broker.bootstrap, prefix, data, AIOPS_KAFKA_MAX_POLL_RECORDS="50",
               AIOPS_CHECKPOINT_INTERVAL_S="0.2")  # fmt: skip
    proc = _start(env, log)
    try:
        _wait(lambda: total * 0.25 < sum(_committed(kafka_broker.bootstrap, f"{prefix}-group").values()),
              180, "a quarter of the stream committed", [proc])  # fmt: skip
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    committed_at_kill = sum(_committed(kafka_broker.bootstrap, f"{prefix}-group").values())
    assert committed_at_kill < total, "the consumer finished before the kill; the test proves nothing"

    proc = _start(env, log)
    try:
        _wait(lambda: _committed(kafka_broker.bootstrap, f"{prefix}-group") == ends, 180,
              "all offsets committed after restart", [proc])  # fmt: skip
    finally:
        _stop(proc, log)

    got, ref = _restored(data), _reference(feed)
    assert got.stats.messages == len(sends)  # state and offsets resumed together: nothing twice
    assert got.stats.points == ref.stats.points and got.stats.rejects == 0
    stored = _anomaly_keys(data)
    assert len(stored) == len(set(stored))
    assert sorted(stored) == sorted((a.series, a.first_seen) for a in _reference_anomalies(feed))
    store = Store(data / "aiops.db")
    try:
        owners: dict[str, str] = {}
        for inc in store.incidents():
            for a in inc["anomalies"]:
                key = f"{a['series']}@{a['first_seen_unix_nano']}"
                assert key not in owners, f"anomaly {key} in two incidents"
                owners[key] = inc["id"]
    finally:
        store.close()
    keys = {f"{s}@{t}" for s, t in stored}
    assert set(owners) <= keys
    # every detected anomaly is in an incident; a never-seen log template only joins one that is open
    assert {k for k in keys if "/log.new_template" not in k} <= set(owners)


def test_two_consumers_in_one_group_split_the_partitions(kafka_broker, unique_topic_prefix, tmp_path):
    prefix = unique_topic_prefix
    _create(kafka_broker, prefix, partitions=3)
    env_a = _env(kafka_broker.bootstrap, prefix, tmp_path / "a")
    env_b = _env(kafka_broker.bootstrap, prefix, tmp_path / "b")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [_start(env_a, logs[0]), _start(env_b, logs[1])]

    def assigned(log: Path) -> set[str]:
        lines = [ln for ln in log.read_text().splitlines() if "partitions assigned" in ln]
        return set(json.loads(lines[-1].split("partitions assigned: ", 1)[1].replace("'", '"'))) if lines else set()

    try:
        _wait(lambda: all(assigned(lg) for lg in logs) and not (assigned(logs[0]) & assigned(logs[1]))
              and len(assigned(logs[0]) | assigned(logs[1])) == 3 * 2 + 2, 120, "both members assigned", procs)  # fmt: skip
        feed = _feed(minutes=20)
        sends, _ = _sends(prefix, feed, 3)
        ends = _produce(kafka_broker.bootstrap, sends)
        _wait(lambda: _committed(kafka_broker.bootstrap, f"{prefix}-group") == ends, 180, "all committed", procs)
    finally:
        for p, lg in zip(procs, logs, strict=True):
            _stop(p, lg)
    a, b = _restored(tmp_path / "a"), _restored(tmp_path / "b")
    assert a.stats.messages > 0 and b.stats.messages > 0, "one member did all the work"
    assert a.stats.messages + b.stats.messages == len(sends)
    a_parts, b_parts = set(_checkpoint_offsets(tmp_path / "a")), set(_checkpoint_offsets(tmp_path / "b"))
    assert not a_parts & b_parts
    assert a_parts | b_parts == set(ends)


def _checkpoint_offsets(data_dir: Path) -> dict[str, int]:
    store = Store(data_dir / "aiops.db")
    try:
        saved = store.checkpoint(CHECKPOINT)
    finally:
        store.close()
    assert saved is not None
    return saved[1]


def test_simulator_produces_to_kafka_and_the_service_consumes_it(kafka_broker, unique_topic_prefix, tmp_path):
    """``python -m aiops.sim --kafka`` → default topics → ``aiops run`` with default topic names."""
    kafka_broker.create_topics(["otlp_metrics"], partitions=2)
    kafka_broker.create_topics(["otlp_logs", "otlp_spans", "aiops.deadletter"], partitions=1)
    start = str(time.time_ns() - 2 * 3600 * 10**9)
    r = subprocess.run([sys.executable, "-m", "aiops.sim", "--kafka", kafka_broker.bootstrap, "--duration", "600",
                        "--services", "5", "--start-unix-nano", start], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    sent = json.loads(r.stdout)["messages"]
    assert sent["otlp_metrics"] > 0 and sent["otlp_logs"] == sent["otlp_spans"] == 60
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    env |= {"AIOPS_KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "AIOPS_KAFKA_GROUP": f"{unique_topic_prefix}-g",
            "AIOPS_KAFKA_FORMAT": "otlp_json", "AIOPS_CHECKPOINT_INTERVAL_S": "0.5",
            "AIOPS_DATA_DIR": str(tmp_path / "data"), "AIOPS_PORT": "0"}  # fmt: skip
    log = tmp_path / "run.log"
    proc = _start(env, log)
    try:
        _wait(lambda: sum(_committed(kafka_broker.bootstrap, f"{unique_topic_prefix}-g").values()) == sum(sent.values()),
              120, "the simulated feed consumed", [proc])  # fmt: skip
    finally:
        _stop(proc, log)
    got = _restored(tmp_path / "data")
    assert got.stats.messages == sum(sent.values()) and got.stats.rejects == 0
    assert got.stats.points > 0 and got.stats.spans > 0 and got.stats.logs > 0
