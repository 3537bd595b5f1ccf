"""``aiops run``: Kafka in; incidents to SQLite, Slack and the REST API; playbooks after approval.

The pipeline thread loops poll → process → (every ``checkpoint_interval_s``) store state +
offsets in one SQLite transaction → commit those offsets to Kafka. Incidents are written and
handed to the notifier and the executor as they are published (both are durable and idempotent
per incident, so a replay after a crash re-publishes without doubling anything). Around it, in
their own threads: the API server, the notifier's outbox dispatcher and the executor's worker.
Changes to learned state asked for over the API run in the pipeline thread, between batches
(:meth:`Service.run_in_pipeline`). SIGTERM/SIGINT finish the current batch, checkpoint, stop the
helpers and leave the group.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from aiops.act.executor import Executor
from aiops.act.model import Action
from aiops.act.playbooks import load_playbooks
from aiops.api.app import ApiContext, Faults, create_app
from aiops.api.auth import TokenTable
from aiops.api.server import ApiServer
from aiops.config import Settings
from aiops.correlate.contract import Incident
from aiops.dashboard.views import PipelineViews
from aiops.detect.episodes import Anomaly
from aiops.detect.models import versions
from aiops.ingest.deadletter import DeadLetterSink, FileDeadLetter, KafkaDeadLetter
from aiops.ingest.kafka import KafkaSource
from aiops.ingest.kafka import producer as kafka_producer
from aiops.ingest.records import Message
from aiops.learn.learner import Learner
from aiops.learn.memory import preferred_playbook
from aiops.monitor import EngineMonitor
from aiops.notify.notifier import Notifier
from aiops.notify.transport import Transport
from aiops.pipeline import Pipeline
from aiops.store.sqlite import Store

log = logging.getLogger(__name__)
CHECKPOINT = "pipeline"
T = TypeVar("T")


class Source(Protocol):
    """Where telemetry comes from: a Kafka consumer group, or the demo's paced simulator."""

    positions: dict[str, int]

    def open(self, resume: dict[str, int] | None = None) -> None: ...
    def poll(self, timeout_ms: int = 1000) -> list[Message]: ...
    def commit(self, offsets: dict[str, int]) -> None: ...
    def close(self) -> None: ...


class Service:
    def __init__(self, settings: Settings, on_incident: Callable[[Incident], None] | None = None, *,
                 source: Source | None = None, transport: Transport | None = None,
                 now_ns: Callable[[], int] = time.time_ns, faults: Faults | None = None,
                 stage: Callable[..., Pipeline] = Pipeline, checkpoint: str = CHECKPOINT) -> None:  # fmt: skip
        """``source`` replaces the telemetry consumer (a source other than Kafka also replaces the
        dead-letter topic with a file under ``data_dir``); ``transport`` replaces Slack (the demo
        prints messages); ``now_ns`` is the clock timestamps are checked against (the simulator's,
        in the demo); ``faults`` lets the API inject faults into it (``POST /demo/faults``).
        ``stage`` and ``checkpoint`` are what the scaled-out incident stage changes: the pipeline
        class (:class:`~aiops.scale.stage.IncidentStage`) and the name its state is stored under."""
        self.settings = settings
        self.on_incident = on_incident
        self._source, self._transport, self._now_ns, self._faults = source, transport, now_ns, faults
        self._stage, self._checkpoint_name = stage, checkpoint
        self._anomalies: list[Anomaly] = []
        self._commands: queue.Queue[tuple[Callable[[Pipeline], Any], Future[Any]]] = queue.Queue()
        self._pipeline_thread: int | None = None
        self._last_batch = time.time()
        self.store: Store | None = None
        self.pipeline: Pipeline | None = None
        self.executor: Executor | None = None
        self.notifier: Notifier | None = None
        self.learner: Learner | None = None
        self.api: ApiServer | None = None
        self.monitor: EngineMonitor | None = None
        self.lock = threading.RLock()  # held while the pipeline's state changes; the dashboard reads under it
        self._dead_letter: DeadLetterSink | None = None

    # --- the pipeline thread's outputs ---------------------------------------------------------
    def _incident(self, inc: Incident) -> None:
        """A published incident: remembered, stored, proposed for action, announced."""
        if self.learner is not None and inc.status == "open":
            found = preferred_playbook(self.learner.similar(inc.model_dump()))
            if found is not None and found[0] != inc.suggested_playbook:
                inc = inc.model_copy(update={"suggested_playbook": found[0]})
                log.info("incident %s: suggesting %s", inc.id, found[1])
        assert self.store is not None
        self.store.commit([inc], [])
        action = None
        if self.executor is not None:
            if inc.status == "open":
                action = self.executor.propose(inc)
            else:
                self.executor.withdraw(inc.id)
        if self.notifier is not None:
            self.notifier.incident(inc, action)
        if self.on_incident is not None:
            self.on_incident(inc)

    def _action_changed(self, action: Action) -> None:
        if self.notifier is not None and self.store is not None:
            record = self.store.incident(action.incident_id)
            self.notifier.action_changed(action, Incident.model_validate(record) if record else None)

    def _verify(self, action: Action) -> bool | None:
        """Back to normal once the pipeline has resolved the action's incident; unknown until then."""
        pipeline = self.pipeline
        return None if pipeline is None or action.incident_id in pipeline.incidents.open else True

    def run_in_pipeline(self, fn: Callable[[Pipeline], T], timeout_s: float = 30.0) -> T:
        """Run ``fn(pipeline)`` in the pipeline thread between batches and return its result."""
        if self._pipeline_thread == threading.get_ident():
            assert self.pipeline is not None
            return fn(self.pipeline)
        fut: Future[T] = Future()
        self._commands.put((fn, fut))
        return fut.result(timeout=timeout_s)

    def _drain_commands(self, pipeline: Pipeline) -> None:
        while True:
            try:
                fn, fut = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                with self.lock:
                    fut.set_result(fn(pipeline))
            except BaseException as e:  # the caller (an API request) gets the error, the loop goes on
                fut.set_exception(e)

    # --- health and figures --------------------------------------------------------------------
    def _health(self) -> dict[str, Any]:
        age = time.time() - self._last_batch
        checks: dict[str, Any] = {"pipeline": {"ok": age < 60, "last_poll_age_s": round(age, 1)}}
        if self.notifier is not None:
            checks["slack_outbox"] = {"ok": True, "depth": self.notifier.depth()}
        if self.monitor is not None:
            checks |= self.monitor.health()
        return checks

    def _snapshot(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.pipeline is not None:
            st = self.pipeline.stats
            out |= {"messages": st.messages, "points": st.points, "logs": st.logs, "spans": st.spans,
                    "anomalies": st.anomalies, "predictions": st.predictions, "incidents": len(st.incident_ids),
                    "series": len(self.pipeline.series)}  # fmt: skip
            out |= {f"bad_records|reason={reason}": n for reason, n in st.reasons.items()}
        if self.notifier is not None:
            out["outbox_depth"] = self.notifier.depth()
            out |= {f"slack_messages|outcome={k}": v for k, v in self.notifier.stats.items()}
        if self.executor is not None:
            counts: dict[str, int] = {}
            for a in self.executor.actions():
                counts[a.status] = counts.get(a.status, 0) + 1
            out |= {f"actions|status={k}": v for k, v in counts.items()}
        if self.monitor is not None:
            out |= self.monitor.snapshot()
        return out

    # --- wiring --------------------------------------------------------------------------------
    def _start_helpers(self, stop: threading.Event, store: Store) -> list[threading.Thread]:
        s = self.settings
        notify = s.notify_config()
        if self._transport is not None:
            self.notifier = Notifier(store, notify.model_copy(update={"webhook_url": notify.webhook_url or "console"}),
                                     transport=self._transport)  # fmt: skip
        elif notify.webhook_url or (notify.bot_token and notify.channel):
            self.notifier = Notifier(store, notify)
        else:
            log.warning("no Slack webhook configured (AIOPS_SLACK_WEBHOOK_URL): incidents go to SQLite and the API only")
        if s.executor.playbooks_dir.is_dir():
            assert self.pipeline is not None
            self.executor = Executor(store, load_playbooks(s.executor.playbooks_dir), s.executor,
                                     on_change=self._action_changed, verify=self._verify,
                                     changes=self.pipeline.changes)  # fmt: skip
            self.executor.recover()
        else:
            log.warning("no playbooks at %s: incidents get no remediation proposals", s.executor.playbooks_dir)
        models = s.data_dir / "models"
        self.learner = Learner(store, models, self.run_in_pipeline, s.learn,
                               fixed_by=self._fixed_by)  # fmt: skip
        assert self.pipeline is not None
        views = PipelineViews(self.pipeline, self.lock, s, list(self.executor.playbooks.values()) if self.executor else [])
        ctx = ApiContext(store, TokenTable(s.api_tokens), s.slack_signing_secret, dict(s.slack_users), s.api_read_role,
                         self.executor, self.notifier, self.learner, self._health, self._snapshot,
                         faults=self._faults, views=views)  # fmt: skip
        self.api = ApiServer(create_app(ctx), s.api_host, s.port, s.data_dir / "api.port")
        self.api.start()
        threads = []
        for part in (self.notifier, self.executor):
            if part is not None:
                t = threading.Thread(target=part.run, args=(stop,), name=f"aiops-{type(part).__name__.lower()}",
                                     daemon=True)  # fmt: skip
                t.start()
                threads.append(t)
        return threads

    def _fixed_by(self, incident_id: str) -> list[str]:
        if self.executor is None:
            return []
        return [a.playbook for a in self.executor.actions(incident_id=incident_id)
                if a.status == "succeeded" and a.verification == "passed"]  # fmt: skip

    def run(self, stop: threading.Event) -> Pipeline:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        store = self.store = Store(s.data_dir / "aiops.db")
        producer = None
        if self._source is None or isinstance(self._source, KafkaSource):
            producer = kafka_producer(s.kafka_bootstrap)
            dead_letter: DeadLetterSink = KafkaDeadLetter(producer, s.kafka_deadletter_topic)
        else:
            dead_letter = FileDeadLetter(s.data_dir / "deadletter.jsonl")
        self._dead_letter = dead_letter
        pipeline = self.pipeline = self._stage(dead_letter, self._incident, self._anomalies.append, now_ns=self._now_ns,
                                               **s.pipeline_options())  # fmt: skip
        self._pipeline_thread = threading.get_ident()
        saved = store.checkpoint(self._checkpoint_name)
        resume: dict[str, int] = {}
        models = s.data_dir / "models"
        if saved is not None:
            pipeline.restore(saved[0])
            resume = saved[1]
            log.info("resumed from checkpoint at offsets %s", resume)
        elif pipeline.detects and versions(models, "metrics"):
            log.info("no checkpoint: detectors warm-started from %s", pipeline.load_models(models).path)
        self.monitor = EngineMonitor(pipeline, models_dir=models)
        helpers_stop = threading.Event()
        threads: list[threading.Thread] = []
        source = None
        try:
            threads = self._start_helpers(helpers_stop, store)
            pipeline.incidents.evidence_weights = dict(self.learner.weights) if self.learner else {}
            source = self._source or KafkaSource.telemetry(s)
            source.open(resume)
            self._loop(stop, store, pipeline, source, dict(resume), models)
        finally:
            helpers_stop.set()
            for t in threads:
                t.join(timeout=10)
            if self.api is not None:
                self.api.stop()
            if source is not None:
                source.close()
            if producer is not None:
                producer.close()
            dead_letter.close()
            store.close()
        return pipeline

    def _loop(self, stop: threading.Event, store: Store, pipeline: Pipeline, source: Source,
              offsets: dict[str, int], models: Any) -> None:  # fmt: skip
        s = self.settings
        last = last_model = time.monotonic()
        dirty = False
        while not stop.is_set():
            messages = source.poll(timeout_ms=100)
            self._last_batch = time.time()
            if messages:
                with self.lock:
                    pipeline.process(messages)
                dirty = True
            if self.monitor is not None:
                if messages:
                    self.monitor.observe(messages)
                if isinstance(source, KafkaSource):
                    self.monitor.observe_kafka(source)
            self._drain_commands(pipeline)
            if dirty and time.monotonic() - last >= s.checkpoint_interval_s:
                offsets = self._checkpoint(store, pipeline, source, offsets)
                dirty, last = False, time.monotonic()
            if time.monotonic() - last_model >= s.model_save_interval_s and pipeline.detects and len(pipeline.series):
                log.info("models saved: %s", [str(i.path) for i in pipeline.save_versions(models)])
                last_model = time.monotonic()
        self._drain_commands(pipeline)
        if dirty:
            self._checkpoint(store, pipeline, source, offsets)
        if pipeline.detects and len(pipeline.series):
            log.info("models saved: %s", [str(i.path) for i in pipeline.save_versions(models)])

    def _checkpoint(self, store: Store, pipeline: Pipeline, source: Source, offsets: dict[str, int]) -> dict[str, int]:
        offsets = {**offsets, **source.positions}
        if self._dead_letter is not None:
            self._dead_letter.flush()  # the refused records of these offsets are in the dead-letter topic first
        store.commit([], self._anomalies, (self._checkpoint_name, pipeline.snapshot(), offsets))
        source.commit(offsets)
        self._anomalies.clear()  # the pipeline holds this list's append
        log.info("checkpoint: %s", pipeline.stats.summary())
        return offsets
