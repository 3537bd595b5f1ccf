"""One active incident stage, elected by Kafka: the consumer-group member that owns the single
partition of the leader topic is the leader; the others wait as standbys.

Kafka's group protocol does the rest: when the leader dies or stops heartbeating for the session
timeout, the group rebalances and a standby is given the partition. The sticky assignor keeps
the partition where it is when a standby joins, so starting a standby does not move leadership.
Nothing is ever written to the topic; membership is the whole mechanism.

A rebalance empties a member's assignment until the join completes, so an empty assignment is
only taken as lost leadership once the group has had ``settle_s`` to finish rebalancing. A
leader that was cut off (stalled past its session) may act until it notices; what it could do
twice is guarded elsewhere (incident ids are deterministic, playbook runs are leased).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from kafka import KafkaConsumer, TopicPartition
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

from aiops.ingest.kafka import KafkaSource, partition_name
from aiops.ingest.records import Message

log = logging.getLogger(__name__)


class LeadershipLost(Exception):
    """The group gave the leader partition to another member: stop acting, go back to standby."""


class Leadership:
    def __init__(self, bootstrap: str, group: str, topic: str, session_timeout_ms: int = 10_000) -> None:
        self.settle_s = session_timeout_ms / 1000
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
            partition_assignment_strategy=[StickyPartitionAssignor], session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(100, session_timeout_ms // 4), max_poll_interval_ms=max(30_000, 3 * session_timeout_ms),
        )  # fmt: skip
        self.consumer.subscribe([topic])

    def _owned(self, timeout_ms: int) -> bool:
        self.consumer.poll(timeout_ms=timeout_ms, max_records=1)
        return bool(self.consumer.assignment())

    def acquire(self, stop: threading.Event) -> bool:
        """Wait until this member leads (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            if self._owned(500):
                log.info("leadership acquired")
                return True
        return False

    def check(self) -> None:
        """Keep the membership alive; raise :class:`LeadershipLost` if another member leads now."""
        if self._owned(0):
            return
        deadline = time.monotonic() + self.settle_s
        while time.monotonic() < deadline:
            if self._owned(200):
                return
        raise LeadershipLost("the leader partition belongs to another incident stage now")

    def close(self) -> None:
        self.consumer.close(autocommit=False)


class LeaderSource(KafkaSource):
    """The incident stage's input: every partition of the findings and topology topics, read only
    while this process leads (each poll checks; losing it raises :class:`LeadershipLost`, so the
    stage stops before its next batch and never checkpoints over the new leader's state).

    Topics in ``first`` are read before the others: the others' partitions are paused while any
    of theirs has records left. The call graph must be as far as the anomalies that rely on it
    (two topics keep no order between them, and a backlog would otherwise be read in any order).
    """

    def __init__(self, leadership: Leadership, bootstrap: str, group: str, topics: list[str],
                 first: Iterable[str] = (), **options: object) -> None:  # fmt: skip
        super().__init__(bootstrap, group, dict.fromkeys(topics, "findings"), dict.fromkeys(topics, "native"),
                         **options)  # type: ignore[arg-type]  # fmt: skip
        self.leadership, self.first = leadership, set(first)

    def open(self, resume: dict[str, int] | None = None) -> None:
        self.resume = dict(resume or {})
        self.consumer = self._new_consumer()
        parts = [TopicPartition(t, p) for t in sorted(self.topics) for p in sorted(self.consumer.partitions_for_topic(t) or ())]
        self.consumer.assign(parts)
        for tp in parts:
            if partition_name(tp) in self.resume:
                self.consumer.seek(tp, self.resume[partition_name(tp)])

    def poll(self, timeout_ms: int = 500) -> list[Message]:
        self.leadership.check()
        assert self.consumer is not None, "open() first"
        parts = self.consumer.assignment()
        ahead = [tp for tp in parts if tp.topic in self.first]
        behind = any((high := self.consumer.highwater(tp)) is None or self.consumer.position(tp) < high for tp in ahead)
        rest = [tp for tp in parts if tp.topic not in self.first]
        if behind:
            self.consumer.pause(*rest)
        else:
            self.consumer.resume(*rest)
        return super().poll(timeout_ms)
