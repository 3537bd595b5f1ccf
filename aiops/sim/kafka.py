"""Produce a simulator run to Kafka, as a Collector's kafka exporter would (``otlp_json``).

Metrics are keyed by ``service.name`` (the partitioning DESIGN.md asks of telemetry topics);
logs and spans, which mix services in one message, go unkeyed unless ``by_service`` splits them
into one message per resource, keyed by its service, as the Collector's kafka exporter does for
metrics and logs with ``partition_*_by_resource_attributes``: what a scaled-out install
(``aiops run --role detect``) needs, so that a service's telemetry shares one partition.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .simulator import SimMessage, Simulator

DEFAULT_TOPICS = {"metrics": "otlp_metrics", "logs": "otlp_logs", "spans": "otlp_spans"}


def produce(
    sim: Simulator,
    bootstrap: str,
    duration_seconds: float,
    topics: dict[str, str] | None = None,
    speed: float | None = None,
    by_service: bool = False,
) -> dict[str, Any]:
    """Send ``duration_seconds`` of simulated telemetry; ``speed`` paces it (simulated s per real s)."""
    from kafka import KafkaProducer

    topics = {**DEFAULT_TOPICS, **(topics or {})}
    counts = dict.fromkeys(topics.values(), 0)
    with KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10) as producer:
        for _ in range(sim.steps_for(duration_seconds)):
            started = time.monotonic()
            for m in (split(sim.step()) if by_service else sim.step()):
                producer.send(topics[m.kind], key=m.key.encode() if m.key else None, value=m.payload)
                counts[topics[m.kind]] += 1
            if speed:
                producer.flush()
                time.sleep(max(0.0, sim.step_seconds / speed - (time.monotonic() - started)))
        producer.flush()
    return {"bootstrap": bootstrap, "messages": counts, "truth": sim.truth}


_RESOURCE_LISTS = {"metrics": "resourceMetrics", "logs": "resourceLogs", "spans": "resourceSpans"}


def _service(resource: dict[str, Any]) -> str | None:
    for kv in resource.get("resource", {}).get("attributes", []):
        if kv.get("key") == "service.name":
            return str(kv.get("value", {}).get("stringValue"))
    return None


def split(messages: list[SimMessage]) -> list[SimMessage]:
    """Each multi-service message as one message per resource, keyed by its ``service.name``."""
    out = []
    for m in messages:
        if m.key is not None:
            out.append(m)
            continue
        field = _RESOURCE_LISTS[m.kind]
        for resource in json.loads(m.payload)[field]:
            payload = json.dumps({field: [resource]}, separators=(",", ":")).encode()
            out.append(SimMessage(m.kind, m.ts_unix_nano, payload, _service(resource)))
    return out
