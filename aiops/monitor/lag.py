"""Kafka consumer lag per partition: the log end offset minus the next offset the pipeline will process.

kafka-python's consumer is not thread-safe, so this runs in the pipeline thread (between
batches), asks the broker at most every ``refresh_s``, and leaves the result for other
threads to read. A partition not yet processed since it was assigned counts from the
consumer's fetch position (the resumed or committed offset).
"""

from __future__ import annotations

import logging
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from aiops.ingest.kafka import KafkaSource

log = logging.getLogger(__name__)


class KafkaLag:
    def __init__(self, refresh_s: float = 5.0, timeout_ms: int = 2000) -> None:
        self.refresh_s = refresh_s
        self.timeout_ms = timeout_ms
        self.lag: dict[str, int] = {}  # "topic/partition" -> records behind the log end
        self._last = float("-inf")

    def refresh(self, source: KafkaSource, now: float) -> bool:
        """Ask the broker for end offsets if ``refresh_s`` has passed; whether it did."""
        if now - self._last < self.refresh_s or source.consumer is None:
            return False
        self._last = now
        consumer = source.consumer
        assigned = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
        try:
            ends = consumer.end_offsets(assigned, timeout_ms=self.timeout_ms) if assigned else {}
            self.lag = {f"{tp.topic}/{tp.partition}": max(int(ends[tp]) - self._position(source, consumer, tp), 0)
                        for tp in assigned if tp in ends}  # fmt: skip
        except KafkaError as e:  # a slow or unreachable broker: keep the last figures, try again later
            log.warning("consumer lag not refreshed: %s", e)
        return True

    def _position(self, source: KafkaSource, consumer: Any, tp: TopicPartition) -> int:
        processed = source.positions.get(f"{tp.topic}/{tp.partition}")
        return processed if processed is not None else int(consumer.position(tp, timeout_ms=self.timeout_ms) or 0)
