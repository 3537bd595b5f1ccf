"""Running the real ``aiops run`` against a broker, and the in-process reference it is judged by.

Shared by the Kafka integration tests (``test_kafka_service.py``) and the reliability suite
(``reliability/``): start/stop the CLI as a subprocess, produce and read committed offsets, and
recompute what the service should have stored by running the same messages through the embedded
pipeline in order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from aiops.ingest.deadletter import MemoryDeadLetter
from aiops.ingest.records import Message
from aiops.pipeline import Pipeline
from aiops.service import CHECKPOINT
from aiops.store.sqlite import Store


def _produce(bootstrap: str, sends: list[tuple[str, bytes | None, bytes, int | None]]) -> dict[str, int]:
    """Send in order; return the end offset of every partition written to ("topic/p" -> next offset)."""
    ends: dict[str, int] = {}
    with KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5) as producer:
        futures = [producer.send(t, key=key, value=value, partition=part) for t, key, value, part in sends]
        producer.flush(timeout=60)
        for f in futures:
            md = f.get(timeout=60)
            name = f"{md.topic}/{md.partition}"
            ends[name] = max(ends.get(name, 0), md.offset + 1)
    return ends


def _committed(bootstrap: str, group: str) -> dict[str, int]:
    with KafkaAdminClient(bootstrap_servers=bootstrap, client_id="aiops-test") as admin:
        try:
            offsets = admin.list_group_offsets(group).get(group, {})
        except KafkaError:  # the group's coordinator does not exist until the consumer joins
            return {}
    return {f"{tp.topic}/{tp.partition}": om.offset for tp, om in offsets.items()}


def _wait(cond: Callable[[], bool], timeout: float, what: str, procs: list[subprocess.Popen] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        for p in procs:
            assert p.poll() is None, f"aiops run exited early with {p.returncode} while waiting for {what}"
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _env(bootstrap: str, prefix: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    env.update({
        "AIOPS_KAFKA_BOOTSTRAP": bootstrap,
        "AIOPS_KAFKA_GROUP": f"{prefix}-group",
        "AIOPS_KAFKA_TOPICS_METRICS": f"{prefix}-metrics-json,{prefix}-metrics-proto",
        "AIOPS_KAFKA_TOPICS_LOGS": f"{prefix}-logs",
        "AIOPS_KAFKA_TOPICS_SPANS": f"{prefix}-spans",
        "AIOPS_KAFKA_FORMAT": "otlp_json",
        "AIOPS_KAFKA_TOPIC_FORMATS": json.dumps({f"{prefix}-metrics-proto": "otlp_proto"}),
        "AIOPS_KAFKA_DEADLETTER_TOPIC": f"{prefix}-deadletter",
        "AIOPS_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "AIOPS_CHECKPOINT_INTERVAL_S": "0.5",
        "AIOPS_DATA_DIR": str(data_dir),
        "AIOPS_PORT": "0",  # the API binds a free port (written to DATA_DIR/api.port)
        **extra,
    })  # fmt: skip
    return env


def _start(env: dict[str, str], log: Path, role: str = "all") -> subprocess.Popen:
    with log.open("ab") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "aiops", "-v", "run", "--role", role], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip


def _stop(p: subprocess.Popen, log: Path) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        assert p.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if p.poll() is None:
            p.kill()


def _stop_all(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every process still running, then wait for each (SIGKILL after a minute)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


def _reference(feed: list) -> Pipeline:
    """The same telemetry through the embedded pipeline, in order, in-process."""
    incidents: list = []
    p = Pipeline(MemoryDeadLetter(), incidents.append)
    p.process([Message(m.kind, "otlp_json", m.payload, "ref", i) for i, m in enumerate(feed)])
    return p


def _restored(data_dir: Path) -> Pipeline:
    store = Store(data_dir / "aiops.db")
    saved = store.checkpoint(CHECKPOINT)
    store.close()
    assert saved is not None, "no checkpoint stored"
    p = Pipeline(MemoryDeadLetter(), lambda _: None)
    p.restore(saved[0])
    return p


def _anomaly_keys(data_dir: Path) -> list[tuple[str, int]]:
    store = Store(data_dir / "aiops.db")
    try:
        return [(a["series"], a["first_seen"]) for a in store.anomalies()]
    finally:
        store.close()


def _reference_anomalies(feed: list) -> list:
    found: list = []
    p = Pipeline(MemoryDeadLetter(), lambda _: None, found.append)
    p.process([Message(m.kind, "otlp_json", m.payload, "ref", i) for i, m in enumerate(feed)])
    return found
