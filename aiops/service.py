"""``aiops run``: Kafka in, checkpointed state, incidents and anomalies out to SQLite.

The loop is poll → process → (every ``checkpoint_interval_s``) store outputs + state + offsets in
one SQLite transaction → commit those offsets to Kafka. Refused records go to the dead-letter
topic as they are found. SIGTERM/SIGINT finish the current batch, checkpoint and leave the group.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kafka import KafkaProducer

from aiops.config import Settings
from aiops.correlate.contract import Incident
from aiops.detect.episodes import Anomaly
from aiops.detect.models import versions
from aiops.ingest.deadletter import KafkaDeadLetter
from aiops.ingest.kafka import KafkaSource
from aiops.pipeline import Pipeline
from aiops.store.sqlite import Store

log = logging.getLogger(__name__)
CHECKPOINT = "pipeline"


class Service:
    def __init__(self, settings: Settings, on_incident: Callable[[Incident], None] | None = None) -> None:
        self.settings = settings
        self.on_incident = on_incident
        self._incidents: list[Incident] = []
        self._anomalies: list[Anomaly] = []

    def _incident(self, inc: Incident) -> None:
        self._incidents.append(inc)
        if self.on_incident is not None:
            self.on_incident(inc)

    def run(self, stop: threading.Event) -> Pipeline:
        s = self.settings
        store = Store(s.data_dir / "aiops.db")
        producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=5)
        pipeline = Pipeline(KafkaDeadLetter(producer, s.kafka_deadletter_topic), self._incident, self._anomalies.append,
                            **s.pipeline_options())  # fmt: skip
        saved = store.checkpoint(CHECKPOINT)
        resume: dict[str, int] = {}
        models = s.data_dir / "models"
        if saved is not None:
            pipeline.restore(saved[0])
            resume = saved[1]
            log.info("resumed from checkpoint at offsets %s", resume)
        elif versions(models, "metrics"):
            log.info("no checkpoint: detectors warm-started from %s", pipeline.load_models(models).path)
        topics = s.topic_signals()
        source = KafkaSource(s.kafka_bootstrap, s.kafka_group, topics, {t: s.topic_format(t) for t in topics},
                             s.kafka_session_timeout_ms, s.kafka_max_poll_records)  # fmt: skip
        source.open(resume)
        offsets = dict(resume)
        last = last_model = time.monotonic()
        dirty = False
        try:
            while not stop.is_set():
                messages = source.poll(timeout_ms=200)
                if messages:
                    pipeline.process(messages)
                    dirty = True
                if dirty and time.monotonic() - last >= s.checkpoint_interval_s:
                    offsets = self._checkpoint(store, pipeline, source, offsets)
                    dirty, last = False, time.monotonic()
                if time.monotonic() - last_model >= s.model_save_interval_s and len(pipeline.series):
                    log.info("models saved: %s", [str(i.path) for i in pipeline.save_versions(models)])
                    last_model = time.monotonic()
            if dirty:
                self._checkpoint(store, pipeline, source, offsets)
            if len(pipeline.series):
                log.info("models saved: %s", [str(i.path) for i in pipeline.save_versions(models)])
        finally:
            source.close()
            producer.close()
            store.close()
        return pipeline

    def _checkpoint(self, store: Store, pipeline: Pipeline, source: KafkaSource, offsets: dict[str, int]) -> dict[str, int]:
        offsets = {**offsets, **source.positions}
        store.commit(self._incidents, self._anomalies, (CHECKPOINT, pipeline.snapshot(), offsets))
        source.commit(offsets)
        self._incidents.clear()
        self._anomalies.clear()  # the pipeline holds this list's append
        log.info("checkpoint: %s", pipeline.stats.summary())
        return offsets
