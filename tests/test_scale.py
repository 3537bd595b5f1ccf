"""The scaled-out arrangement (detect pipelines per partition → findings records → incident stage)
publishes what the embedded pipeline publishes, also across restarts and re-sent records.

Kafka is left out here (records are handed over in memory); tests/reliability/test_scale_out.py
runs the same roles as processes against a real broker.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable

import pytest

from aiops.correlate.contract import Incident
from aiops.detect.models import load_blob, save_blob, versions
from aiops.ingest.deadletter import MemoryDeadLetter
from aiops.ingest.records import Message
from aiops.pipeline import Pipeline
from aiops.scale.findings import FindingsWriter, decode, encode
from aiops.scale.stage import IncidentStage
from aiops.sim.kafka import split
from aiops.sim.simulator import FaultSpec, Simulator

START = 1_700_000_000_000_000_000
PARTITIONS = 3


def _batches(seconds: float) -> list[list[Message]]:
    """Simulated telemetry, one message per service, each tagged with its service's partition."""
    sim = Simulator(n_services=6, seed=3, start_unix_nano=START, faults=[
        FaultSpec(service="postgres", kind="latency", start=2400, duration=600),
        FaultSpec(service="cart", kind="bad_release", start=4200, duration=600),
    ])  # fmt: skip
    out, offset = [], 0
    for _ in range(sim.steps_for(seconds)):
        batch = []
        for m in split(sim.step()):
            offset += 1
            assert m.key is not None
            batch.append(Message(m.kind, "otlp_json", m.payload, f"kafka:t/{zlib.crc32(m.key.encode()) % PARTITIONS}", offset))
        out.append(batch)
    return out


def _published(into: dict[str, list[Incident]]) -> Callable[[Incident], None]:
    return lambda inc: into.setdefault(inc.id, []).append(inc)


class _Scaled:
    """Detect pipelines per partition and an incident stage, records passed in memory."""

    def __init__(self) -> None:
        self.incidents: dict[str, list[Incident]] = {}
        self.stage = IncidentStage(MemoryDeadLetter(), _published(self.incidents))
        self.detect = {p: self._detector(p) for p in range(PARTITIONS)}
        self.sent: list[Message] = []

    @staticmethod
    def _detector(p: int) -> Pipeline:
        pipeline = Pipeline(MemoryDeadLetter(), lambda _: None, correlator=FindingsWriter)
        pipeline.incidents.partition = p
        return pipeline

    def step(self, batch: list[Message]) -> None:
        out = []
        for p, pipeline in self.detect.items():
            mine = [m for m in batch if m.source.endswith(f"/{p}")]
            if mine:
                pipeline.process(mine)
            for kind, record in pipeline.incidents.records:
                out.append(Message("findings", "native", encode(record), f"kafka:{kind}/{p}", len(self.sent) + len(out)))
            pipeline.incidents.records.clear()
        self.sent += out
        self.stage.process(out)


def _final(published: dict[str, list[Incident]]) -> dict[str, dict]:
    """Each incident's last version, scores left out: a log-rate window closes by its own
    partition's event time, so a log series can score a few thousandths apart."""
    out = {}
    for i, versions_ in published.items():
        doc = versions_[-1].model_dump()
        doc["anomalies"] = [(a["series"], a["service"], a["first_seen_unix_nano"]) for a in doc["anomalies"]]
        doc["root_causes"] = [(r["service"], r["indicators"]) for r in doc["root_causes"]]
        out[i] = doc
    return out


@pytest.fixture(scope="module")
def batches() -> list[list[Message]]:
    return _batches(6600)


@pytest.fixture(scope="module")
def reference(batches: list[list[Message]]) -> dict[str, list[Incident]]:
    published: dict[str, list[Incident]] = {}
    p = Pipeline(MemoryDeadLetter(), _published(published))
    for b in batches:
        p.process(b)
    return published


def test_scaled_out_publishes_what_the_embedded_pipeline_publishes(batches, reference) -> None:
    scaled = _Scaled()
    for b in batches:
        scaled.step(b)
    assert len(reference) >= 2
    assert _final(scaled.incidents) == _final(reference)
    assert {i: len(v) for i, v in scaled.incidents.items()} == {i: len(v) for i, v in reference.items()}
    rollback = [v[-1] for v in reference.values() if v[-1].suggested_playbook == "rollback"]
    assert rollback and rollback[0].root_causes[0].service == "cart" and rollback[0].changes


def test_restarts_from_snapshots_and_resent_records_change_nothing(batches, reference) -> None:
    """A detect partition and the incident stage both crash mid-run and resume from snapshots taken
    earlier; the detect side re-processes what followed its snapshot and re-sends those findings
    (at-least-once); the stage re-reads records after its own snapshot. Same final incidents."""
    scaled = _Scaled()
    cut, crash = len(batches) // 2, len(batches) // 2 + 40
    for b in batches[:cut]:
        scaled.step(b)
    detect_blob, stage_blob, sent_at_cut = scaled.detect[1].snapshot(), scaled.stage.snapshot(), len(scaled.sent)
    for b in batches[cut:crash]:
        scaled.step(b)
    # partition 1 dies: a new one from its snapshot re-processes its share of batches[cut:crash]
    scaled.detect[1] = _Scaled._detector(1)
    scaled.detect[1].restore(detect_blob)
    # the stage dies too: a new one from its snapshot, which then re-reads every record after it
    replayed = scaled.sent[sent_at_cut:]
    stage = IncidentStage(MemoryDeadLetter(), _published(scaled.incidents))
    stage.restore(stage_blob)
    stage.process(replayed)
    scaled.stage = stage
    for b in batches[cut:crash]:  # partition 1 catches up; the others re-see nothing
        mine = [m for m in b if m.source.endswith("/1")]
        scaled.detect[1].process(mine)
        scaled.step([])
    for b in batches[crash:]:
        scaled.step(b)
    assert _final(scaled.incidents) == _final(reference)


def test_malformed_records_are_refused_with_a_reason() -> None:
    stage = IncidentStage(dead := MemoryDeadLetter(), lambda _: None)
    good = encode({"v": 1, "type": "findings", "partition": 0, "watermark": 5, "opened": [], "active": [],
                   "predictions": [], "changes": []})  # fmt: skip
    bad = [b"", b"{not json", json.dumps({"v": 2}).encode(), json.dumps({"v": 1, "type": "findings"}).encode(),
           json.dumps({"v": 1, "type": "gossip", "partition": 0}).encode()]  # fmt: skip
    stage.process([Message("findings", "native", x, "kafka:aiops.anomalies/0", i) for i, x in enumerate([good, *bad])])
    assert stage.watermarks == {0: 5}
    assert [r.offset for r in dead.rejects] == [1, 2, 3, 4, 5]
    assert all(r.reason for r in dead.rejects)
    with pytest.raises(ValueError, match="partition"):
        decode(json.dumps({"v": 1, "type": "findings"}).encode())


def test_slow_partition_holds_the_clock_until_it_goes_quiet() -> None:
    now = [0.0]
    stage = IncidentStage(MemoryDeadLetter(), lambda _: None, idle_s=60, clock=lambda: now[0])

    def heard(p: int, seconds: int) -> None:
        record = {"v": 1, "type": "findings", "partition": p, "watermark": seconds * 10**9, "opened": [],
                  "active": [], "predictions": [], "changes": []}  # fmt: skip
        stage.process([Message("findings", "native", encode(record), f"kafka:aiops.anomalies/{p}", 0)])

    heard(0, 100)
    heard(1, 90)
    assert stage.watermark == 90 * 10**9  # the slower partition sets the clock
    now[0] = 50
    heard(0, 5000)  # partition 1 is far behind (catching up): it still holds the clock
    assert stage.watermark == 90 * 10**9
    now[0] = 111
    assert stage.watermark == 5000 * 10**9  # nothing from partition 1 for 111 s: idle, ignored
    heard(1, 4990)
    assert stage.watermark == 4990 * 10**9


def test_partition_checkpoints_keep_the_last_versions(tmp_path) -> None:
    for i in range(5):
        save_blob(tmp_path, "partitions/g/p0", bytes([i]) * 10, {"offsets": {"t/0": i}})
    assert versions(tmp_path, "partitions/g/p0") == [3, 4, 5]
    saved = load_blob(tmp_path, "partitions/g/p0")
    assert saved is not None
    blob, meta, version = saved
    assert (blob, meta["offsets"], version) == (bytes([4]) * 10, {"t/0": 4}, 5)
    assert load_blob(tmp_path, "partitions/g/p1") is None
