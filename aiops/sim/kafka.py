"""Produce a simulator run to Kafka, as a Collector's kafka exporter would (``otlp_json``).

Metrics are keyed by ``service.name`` (the partitioning DESIGN.md asks of telemetry topics);
logs and spans, which mix services in one message, go unkeyed.
"""

from __future__ import annotations

import time
from typing import Any

from .simulator import Simulator

DEFAULT_TOPICS = {"metrics": "otlp_metrics", "logs": "otlp_logs", "spans": "otlp_spans"}


def produce(
    sim: Simulator,
    bootstrap: str,
    duration_seconds: float,
    topics: dict[str, str] | None = None,
    speed: float | None = None,
) -> dict[str, Any]:
    """Send ``duration_seconds`` of simulated telemetry; ``speed`` paces it (simulated s per real s)."""
    from kafka import KafkaProducer

    topics = {**DEFAULT_TOPICS, **(topics or {})}
    counts = dict.fromkeys(topics.values(), 0)
    with KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10) as producer:
        for _ in range(sim.steps_for(duration_seconds)):
            started = time.monotonic()
            for m in sim.step():
                producer.send(topics[m.kind], key=m.key.encode() if m.key else None, value=m.payload)
                counts[topics[m.kind]] += 1
            if speed:
                producer.flush()
                time.sleep(max(0.0, sim.step_seconds / speed - (time.monotonic() - started)))
        producer.flush()
    return {"bootstrap": bootstrap, "messages": counts, "truth": sim.truth}
