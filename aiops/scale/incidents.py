"""An incident-stage process (``aiops run --role incidents``): standby until it leads, then the
service (store, API, Slack, executor) on top of :class:`~aiops.scale.stage.IncidentStage`.

Its state and input offsets are stored in the database under the ``incidents`` checkpoint, so a
standby that takes over resumes where the last leader's checkpoint left off (the database must
be shared by the incident-stage hosts: one SQLite file on one host, or a shared volume). Losing
leadership stops the stage without a checkpoint, since the new leader owns the state now, and
the process goes back to standby. Playbook runs are always detached (``executor.detached``): a
run in flight when the leader dies finishes and is recorded by its own supervisor process, so
the new leader sees it running under a live lease and never starts it again.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable

from aiops.config import Settings
from aiops.correlate.contract import Incident
from aiops.scale.leader import Leadership, LeadershipLost, LeaderSource
from aiops.scale.stage import IncidentStage
from aiops.scale.topics import ensure_topics, partition_counts, require_partitions
from aiops.service import Service

log = logging.getLogger(__name__)
CHECKPOINT = "incidents"


def run_incidents(settings: Settings, stop: threading.Event, on_incident: Callable[[Incident], None] | None = None) -> None:
    # a playbook run must outlive this process: a standby taking over must not start it again
    s = settings.model_copy(update={"executor": settings.executor.model_copy(update={"detached": True})})
    n = s.kafka_internal_partitions
    found = ensure_topics(s.kafka_bootstrap, {s.kafka_topic_anomalies: n, s.kafka_topic_topology: n, s.kafka_topic_leader: 1})
    require_partitions(found, s.kafka_topic_leader, 1)
    telemetry = max(partition_counts(s.kafka_bootstrap, s.topic_signals()).values())
    stage = functools.partial(IncidentStage, partitions=telemetry)  # each holds the clock until heard from
    leadership = Leadership(s.kafka_bootstrap, f"{s.kafka_group}.incidents", s.kafka_topic_leader, s.kafka_session_timeout_ms)
    try:
        log.info("incident stage: standby until it leads")
        while leadership.acquire(stop):
            source = LeaderSource(leadership, s.kafka_bootstrap, f"{s.kafka_group}.incidents-input",
                                  [s.kafka_topic_anomalies, s.kafka_topic_topology], first=[s.kafka_topic_topology],
                                  session_timeout_ms=s.kafka_session_timeout_ms, max_poll_records=s.kafka_max_poll_records)  # fmt: skip
            try:
                Service(s, on_incident, source=source, stage=stage, checkpoint=CHECKPOINT).run(stop)
                return
            except LeadershipLost as e:
                log.warning("%s: back to standby", e)
    finally:
        leadership.close()
