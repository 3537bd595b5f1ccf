"""Kafka in: a consumer-group member that hands out batches and commits only what was processed.

Offsets are never auto-committed. The service stores its state with the offsets that state has
seen, then commits exactly those (:meth:`KafkaSource.commit`), so a crash at any point replays
at most the tail since the last checkpoint (at-least-once), and on restart the consumer seeks
to the checkpoint's offsets (:meth:`KafkaSource.open`) so that state and position agree; after a
rebalance, a partition that comes back resumes where the state left it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kafka import (
    ConsumerRebalanceListener,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.errors import KafkaError

from aiops.ingest.records import Message, Signal, WireFormat

if TYPE_CHECKING:
    from aiops.config import Settings

log = logging.getLogger(__name__)


def producer(bootstrap: str) -> KafkaProducer:
    """The engine's producer: every write acknowledged by all replicas, and 1 MiB batches, since
    dead letters come in bursts (:class:`~aiops.ingest.deadletter.KafkaDeadLetter`)."""
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=1 << 20)


def partition_name(tp: TopicPartition) -> str:
    return f"{tp.topic}/{tp.partition}"


class _Listener(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self.source.on_revoke is not None:
            self.source.on_revoke(sorted(map(partition_name, revoked)))  # while positions still say where state is
        for tp in revoked:
            # Remember where the state is: if the partition comes back (a rejoin after the broker
            # expired this member), it must resume here, not at the group's last commit.
            position = self.source.positions.pop(partition_name(tp), None)
            if position is not None:
                self.source.resume[partition_name(tp)] = position
        log.info("partitions revoked: %s", sorted(map(partition_name, revoked)))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.source.on_assign is not None:
            self.source.on_assign(sorted(map(partition_name, assigned)))  # may set resume offsets from stored state
        for tp in assigned:
            offset = self.source.resume.get(partition_name(tp))
            if offset is not None:
                self.source.consumer.seek(tp, offset)  # state was checkpointed at this offset
        log.info("partitions assigned: %s", sorted(map(partition_name, assigned)))


class KafkaSource:
    """Subscribes to telemetry topics; each topic has a signal and a wire format."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topics: dict[str, Signal],
        formats: dict[str, WireFormat],
        session_timeout_ms: int = 10_000,
        max_poll_records: int = 2000,
        on_assign: Callable[[list[str]], None] | None = None,
        on_revoke: Callable[[list[str]], None] | None = None,
        **consumer_options: Any,
    ) -> None:
        """``on_assign`` / ``on_revoke`` get the "topic/partition" names a rebalance gives or takes,
        so an owner of per-partition state can load it (and set :attr:`resume`) or store it."""
        self.bootstrap = bootstrap
        self.group = group
        self.topics = topics
        self.formats = formats
        self.options = {
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": max(100, session_timeout_ms // 4),
            "max_poll_records": max_poll_records,
            **consumer_options,
        }
        self.positions: dict[str, int] = {}  # "topic/partition" -> next offset to process
        self.resume: dict[str, int] = {}
        self.consumer: KafkaConsumer | None = None
        self.on_assign, self.on_revoke = on_assign, on_revoke

    @classmethod
    def telemetry(cls, settings: Settings, **hooks: Any) -> KafkaSource:
        """The configured telemetry topics, group and consumer options (``hooks``: ``on_assign``, ``on_revoke``)."""
        s, topics = settings, settings.topic_signals()
        return cls(s.kafka_bootstrap, s.kafka_group, topics, {t: s.topic_format(t) for t in topics},
                   s.kafka_session_timeout_ms, s.kafka_max_poll_records, **hooks)  # fmt: skip

    def _new_consumer(self) -> KafkaConsumer:
        """Offsets are never auto-committed; a partition without any starts at its beginning."""
        return KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group, enable_auto_commit=False,
                             auto_offset_reset="earliest", **self.options)  # fmt: skip

    def open(self, resume: dict[str, int] | None = None) -> None:
        """Join the group; partitions found in ``resume`` start at those offsets."""
        self.resume = dict(resume or {})
        self.consumer = self._new_consumer()
        self.consumer.subscribe(topics=sorted(self.topics), listener=_Listener(self))

    def poll(self, timeout_ms: int = 500) -> list[Message]:
        assert self.consumer is not None, "open() first"
        out: list[Message] = []
        for tp, records in self.consumer.poll(timeout_ms=timeout_ms).items():
            signal, fmt = self.topics[tp.topic], self.formats[tp.topic]
            source = f"kafka:{partition_name(tp)}"
            for r in records:
                out.append(Message(signal, fmt, r.value if r.value is not None else b"", source, r.offset))
            if records:
                self.positions[partition_name(tp)] = records[-1].offset + 1
        return out

    def commit(self, offsets: dict[str, int]) -> None:
        """Commit ``offsets`` (the positions a stored checkpoint matches) for partitions still owned."""
        assert self.consumer is not None, "open() first"
        owned = {partition_name(tp): tp for tp in self.consumer.assignment()}
        to_commit = {owned[n]: OffsetAndMetadata(o, "", -1) for n, o in offsets.items() if n in owned}
        if not to_commit:
            return
        try:
            self.consumer.commit(to_commit)
        except KafkaError as e:
            # Broker down or restarting: the checkpoint holding these offsets is already stored (and
            # is where a restart resumes), so only the group's offsets lag until the next commit.
            # Raising here would kill the service while kafka-python reconnects by itself.
            log.warning("offset commit failed; the next checkpoint commits again: %r", e)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
            self.consumer = None
