"""A detect process (``aiops run --role detect``): the detectors of the telemetry partitions the
consumer group gives it.

Telemetry is keyed by ``service.name``, so partition *p* of every telemetry topic holds the same
services; each partition number owned gets a pipeline of its own (decode → validate → derive →
detect → forecast, with a :class:`~aiops.scale.findings.FindingsWriter` in place of the incident
manager), whose findings go to ``aiops.anomalies`` and call-graph changes to ``aiops.topology``.

A partition's state lives in ``models/partitions/<group>/p<N>/v<K>.npz`` (the pipeline snapshot)
with the offsets it has seen in ``v<K>.json``: written every ``checkpoint_interval_s`` and when
a rebalance takes the partition away, read when one gives it (to this or any other process
sharing ``models/``), so learned baselines move with the partition and nothing re-warms or
re-alerts. Order of a checkpoint: findings and dead letters delivered (producer flushed), then
state + offsets written, then offsets committed to Kafka. A crash replays from the last
checkpoint (at least once); the findings it re-sends carry the same episode ids.

Rebalances revoke every partition before assigning (eager protocol), so a revoked pipeline is
kept aside: if the same partition comes back and no one wrote a newer checkpoint for it, it
resumes in memory instead of being reloaded.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from typing import Any

from kafka import KafkaProducer, TopicPartition

from aiops.config import Settings
from aiops.detect.models import load_blob, save_blob, versions
from aiops.ingest.deadletter import KafkaDeadLetter
from aiops.ingest.kafka import KafkaSource, partition_name, producer
from aiops.ingest.records import Message
from aiops.pipeline import Pipeline
from aiops.scale.findings import FindingsWriter, encode, progress
from aiops.scale.topics import ensure_topics

log = logging.getLogger(__name__)


def partition_of(name: str) -> int:
    """``"otlp_metrics/3"`` (or ``"kafka:otlp_metrics/3"``) -> 3."""
    return int(name.rsplit("/", 1)[1])


class _Owned:
    """One partition number's pipeline and the offsets (per topic) its state has seen."""

    def __init__(self, pipeline: Pipeline, offsets: dict[str, int], version: int) -> None:
        self.pipeline, self.offsets, self.version = pipeline, offsets, version
        self.dirty = False  # processed records since the last checkpoint
        self.committed = False  # the group's offsets match the stored ones


class DetectWorker:
    def __init__(self, settings: Settings) -> None:
        s = self.settings = settings
        self.models = s.data_dir / "models"
        self.state_dir = f"partitions/{re.sub(r'[^A-Za-z0-9._-]', '_', s.kafka_group)}"
        self.owned: dict[int, _Owned] = {}
        self.parked: dict[int, _Owned] = {}  # revoked, checkpointed, kept in case it comes back
        self.topic_parts: dict[str, int] = {}
        self.stats: dict[str, float] = defaultdict(float)
        self._producer: KafkaProducer | None = None
        self._source: KafkaSource | None = None
        self._dead_letter: KafkaDeadLetter | None = None
        self.last_poll = time.monotonic()

    # --- partitions come and go ----------------------------------------------------------------
    def _name(self, p: int) -> str:
        return f"{self.state_dir}/p{p}"

    def _pipeline(self) -> Pipeline:
        assert self._dead_letter is not None
        return Pipeline(self._dead_letter, lambda _: None, correlator=FindingsWriter, **self.settings.pipeline_options())

    def _assigned(self, names: list[str]) -> None:
        started = time.monotonic()
        assert self._source is not None
        for p in sorted({partition_of(n) for n in names} - set(self.owned)):
            latest = (versions(self.models, self._name(p)) or [0])[-1]
            parked = self.parked.pop(p, None)
            if parked is not None and parked.version == latest:
                self.owned[p] = parked  # nobody else had it since our checkpoint
            else:
                self.owned[p] = self._load(p)
            self.owned[p].pipeline.incidents.partition = p
            self.owned[p].committed = False
            self._source.resume.update(self.owned[p].offsets)
        self.parked.clear()
        self.stats["rebalance_load_s"] += time.monotonic() - started
        log.info("detecting partitions %s", sorted(self.owned))

    def _load(self, p: int) -> _Owned:
        pipeline = self._pipeline()
        saved = load_blob(self.models, self._name(p))
        if saved is None:
            log.info("partition %d: no checkpoint, detectors start cold", p)
            return _Owned(pipeline, {}, 0)
        blob, meta, version = saved
        pipeline.restore(blob)
        log.info("partition %d: resumed from checkpoint v%d at offsets %s", p, version, meta["offsets"])
        return _Owned(pipeline, {k: int(v) for k, v in meta["offsets"].items()}, version)

    def _revoked(self, names: list[str]) -> None:
        started = time.monotonic()
        gone = {partition_of(n) for n in names} & set(self.owned)
        self._checkpoint(sorted(gone), commit=False)  # no blocking consumer call inside a rebalance callback
        for p in gone:
            self.parked[p] = self.owned.pop(p)
        self.stats["rebalance_save_s"] += time.monotonic() - started

    # --- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        s = self.settings
        self.topic_parts = ensure_topics(s.kafka_bootstrap, {s.kafka_topic_anomalies: s.kafka_internal_partitions,
                                                             s.kafka_topic_topology: s.kafka_internal_partitions})  # fmt: skip
        self._producer = producer(s.kafka_bootstrap)
        self._dead_letter = KafkaDeadLetter(self._producer, s.kafka_deadletter_topic)
        self._source = KafkaSource.telemetry(s, on_assign=self._assigned, on_revoke=self._revoked)
        try:
            self._source.open()
            last = time.monotonic()
            while not stop.is_set():
                messages = self._source.poll(timeout_ms=100)
                self.last_poll = time.monotonic()
                if messages:
                    self.process(messages)
                if time.monotonic() - last >= s.checkpoint_interval_s:
                    self._checkpoint(sorted(self.owned))
                    self._progress()
                    last = time.monotonic()
            self._checkpoint(sorted(self.owned))
        finally:
            self._source.close()  # leaves the group: the others take the partitions at once
            self._producer.close()

    def process(self, messages: list[Message]) -> None:
        by_partition: dict[int, list[Message]] = defaultdict(list)
        for m in messages:
            by_partition[partition_of(m.source)].append(m)
        for p, batch in by_partition.items():
            owned = self.owned.get(p)
            if owned is None:  # a record fetched just before its partition was revoked: the new owner reads it
                continue
            owned.pipeline.process(batch)
            owned.dirty = True
            for m in batch:
                name = m.source.removeprefix("kafka:")
                owned.offsets[name] = max(owned.offsets.get(name, 0), m.offset + 1)
            lagging = self._lagging(p)
            settled = self._settled(p, lagging)
            for kind, record in owned.pipeline.incidents.records:
                if kind == "findings":
                    record["watermark"], record["caught_up"] = settled, not lagging
                self._send(kind, p, record)
            owned.pipeline.incidents.records.clear()
        self.stats["messages"] += len(messages)

    def _lagging(self, p: int) -> list[str]:
        """Partition ``p``'s topic-partitions ("topic/p") with records left to read."""
        assert self._source is not None and self._source.consumer is not None
        consumer, offsets = self._source.consumer, self.owned[p].offsets
        return [partition_name(tp) for tp in consumer.assignment() if tp.partition == p
                and ((high := consumer.highwater(tp)) is None or offsets.get(partition_name(tp), 0) < high)]  # fmt: skip

    def _settled(self, p: int, lagging: list[str]) -> int:
        """The event time partition ``p`` will send nothing older than: that of its slowest topic
        with records left (metrics may be read far ahead of spans), else the newest it has seen."""
        validator = self.owned[p].pipeline.validator
        return min((validator.source_watermark(f"kafka:{name}") for name in lagging), default=validator.watermark)

    def _send(self, kind: str, p: int, record: dict[str, Any]) -> None:
        assert self._producer is not None
        topic = self.settings.kafka_topic_anomalies if kind == "findings" else self.settings.kafka_topic_topology
        self._producer.send(topic, key=f"p{p}".encode(), value=encode(record), partition=p % self.topic_parts[topic])
        self.stats[f"{kind}_records"] += 1

    def _progress(self) -> None:
        """Tell the incident stage, per partition owned, how far it is and whether anything is left to read."""
        for p in self.owned:
            lagging = self._lagging(p)
            self._send("findings", p, progress(p, self._settled(p, lagging), not lagging))

    def _checkpoint(self, partitions: list[int], commit: bool = True) -> None:
        """Findings and dead letters delivered, then state + offsets stored, then offsets committed.

        The stored offsets are what a new owner resumes from; the group's committed offsets only
        show progress (lag), so on revoke they are left to the partition's next owner."""
        assert self._producer is not None and self._dead_letter is not None and self._source is not None
        dirty = [p for p in partitions if self.owned[p].dirty]
        if dirty:
            self._dead_letter.flush()
            self._producer.flush()
        for p in dirty:
            owned = self.owned[p]
            info = save_blob(self.models, self._name(p), owned.pipeline.snapshot(),
                             {"partition": p, "offsets": owned.offsets, "series": len(owned.pipeline.series),
                              "stats": owned.pipeline.stats.summary()})  # fmt: skip
            owned.version, owned.dirty, owned.committed = info.version, False, False
            self.stats["checkpoint_bytes"] = info.meta["bytes"]
            log.info("checkpoint: partition %d v%d at %s", p, info.version, owned.offsets)
        pending = [self.owned[p] for p in partitions if not self.owned[p].committed]
        if commit and pending:  # also what a partition stored before it came here (commit=False on revoke)
            self._source.commit({k: v for o in pending for k, v in o.offsets.items()})
            for o in pending:
                o.committed = True

    def snapshot(self) -> dict[str, float]:
        """Figures for ``/metrics`` (read from the API thread: copies, no locks on the hot path)."""
        out: dict[str, float] = dict(self.stats) | {"partitions_owned": len(self.owned)}
        consumer = self._source.consumer if self._source is not None else None
        for p, owned in list(self.owned.items()):
            st = owned.pipeline.stats
            out |= {f"partition_points|partition={p}": st.points, f"partition_messages|partition={p}": st.messages,
                    f"partition_anomalies|partition={p}": st.anomalies, f"partition_series|partition={p}": len(owned.pipeline.series),
                    f"partition_checkpoint_version|partition={p}": owned.version}  # fmt: skip
            for name, offset in list(owned.offsets.items()):
                high = consumer.highwater(TopicPartition(name.rsplit("/", 1)[0], p)) if consumer else None
                if high is not None:
                    out[f"kafka_lag|partition={name}"] = max(0, high - offset)
        return out
