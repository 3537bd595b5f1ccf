"""The session broker is a real Kafka: round-trips records and keeps them across a restart."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka_broker import KafkaBroker

pytestmark = pytest.mark.kafka


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    with KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5) as producer:
        futures = [producer.send(topic, key=key, value=value) for key, value in records]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)


def _consume(bootstrap: str, topic: str, group: str, count: int,
             timeout: float = 30.0) -> list[tuple[int, bytes]]:
    """Poll as a group member until ``count`` records arrive (group join takes ~1-3 s)."""
    received: list[tuple[int, bytes]] = []
    with KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                       auto_offset_reset="earliest", session_timeout_ms=6000,
                       heartbeat_interval_ms=1000, request_timeout_ms=10000) as consumer:
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                received.extend((record.partition, record.value) for record in batch)
    return received


def test_round_trip_100_messages(kafka_broker: KafkaBroker, unique_topic_prefix: str) -> None:
    topic = f"{unique_topic_prefix}.roundtrip"
    kafka_broker.create_topics([topic], partitions=3)
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(100)]

    _produce(kafka_broker.bootstrap, topic, sent)
    received = _consume(kafka_broker.bootstrap, topic, f"{unique_topic_prefix}.g", len(sent))

    assert sorted(value for _, value in received) == sorted(value for _, value in sent)
    assert {partition for partition, _ in received} == {0, 1, 2}


def test_data_survives_restart(kafka_broker: KafkaBroker, unique_topic_prefix: str) -> None:
    topic = f"{unique_topic_prefix}.restart"
    kafka_broker.create_topics([topic])
    _produce(kafka_broker.bootstrap, topic, [(b"k", b"before-restart")])
    bootstrap = kafka_broker.bootstrap

    kafka_broker.restart()

    assert kafka_broker.bootstrap == bootstrap
    received = _consume(bootstrap, topic, f"{unique_topic_prefix}.g", 1)
    assert [value for _, value in received] == [b"before-restart"]
