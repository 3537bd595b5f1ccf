"""Poison messages: 10,000 fuzzed records mixed into good traffic through a real ``aiops run``.

The good traffic is tests/test_kafka_service.py's feed (5 simulated services, 40 minutes, a
latency fault; metrics half JSON half protobuf over 2 partitions, logs and spans JSON). The
poison (poison_records.py, seeded) is spread through it at seeded positions on the same topics
and partitions. What "refused" means is the code's: an unparsable message is one dead letter
carrying the message's bytes; a parsable one is refused per resource block / metric / point,
each dead letter carrying that part. Every poison record here is built (and checked by the
oracle) to be refused entirely, each one yielding exactly the rejects the decoder+validator give
it in isolation -- one per record with this generator.

Proves: (a) the dead-letter topic holds exactly the expected rejects of every poison record,
keyed by its topic/partition/offset, reason and raw bytes equal (the original bytes for whole-
message refusals); (b) good traffic's points, logs, spans and anomaly set equal an in-process
run over the good records alone; (c) the service stays up throughout and exits 0 on SIGTERM.
Throughput with and without the poison is benchmarks/poison.py's business, not this test's.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from kafka import KafkaConsumer, KafkaProducer
from poison_records import KINDS, interleave, poison
from service_harness import (
    _anomaly_keys,
    _committed,
    _env,
    _reference,
    _reference_anomalies,
    _restored,
    _start,
    _stop,
    _wait,
)
from test_kafka_service import _create, _feed, _sends

pytestmark = pytest.mark.kafka

N_POISON = 10_000
WHOLE_MESSAGE = ("invalid OTLP/", "empty request")  # reasons for which raw is the message itself


def produce_each(bootstrap: str, sends: list) -> list[tuple[str, int, int]]:
    """Send in order; (topic, partition, offset) of every send."""
    with KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=1 << 20) as producer:
        futures = [producer.send(t, key=key, value=value, partition=part) for t, key, value, part in sends]
        producer.flush(timeout=120)
        return [(md.topic, md.partition, md.offset) for md in (f.get(timeout=60) for f in futures)]


def read_letters(bootstrap: str, topic: str) -> list[dict]:
    with KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                       consumer_timeout_ms=5000, max_partition_fetch_bytes=8 << 20) as c:  # fmt: skip
        return [json.loads(r.value) for r in c]


def raw_of(letter: dict) -> bytes:
    return bytes.fromhex(letter["raw"]) if letter["raw_encoding"] == "hex" else letter["raw"].encode()


def test_poison_records_dead_lettered_and_good_traffic_unaffected(kafka_broker, unique_topic_prefix, tmp_path):
    prefix = unique_topic_prefix
    _create(kafka_broker, prefix, partitions=2)
    feed = _feed()
    good, _ = _sends(prefix, feed, 2)
    bad, expected, _redrawn = poison(prefix, feed, N_POISON)
    assert len(bad) == N_POISON and all(expected)
    sends = interleave(good, bad)
    where = produce_each(kafka_broker.bootstrap, sends)
    ends: dict[str, int] = {}
    for topic, part, offset in where:
        ends[f"{topic}/{part}"] = max(ends.get(f"{topic}/{part}", 0), offset + 1)

    log = tmp_path / "run.log"
    proc = _start(_env(kafka_broker.bootstrap, prefix, tmp_path / "data"), log)
    try:
        _wait(lambda: _committed(kafka_broker.bootstrap, f"{prefix}-group") == ends, 240,
              "all offsets committed", [proc])  # fmt: skip
        assert proc.poll() is None, "aiops run exited"
    finally:
        _stop(proc, log)  # (c) asserts a clean exit 0 after SIGTERM
    assert "Traceback" not in log.read_text(errors="replace")

    # (b) good traffic as if the poison had never been there
    got, ref = _restored(tmp_path / "data"), _reference(feed)
    assert got.stats.messages == len(good) + N_POISON
    assert got.stats.points == ref.stats.points > 0
    assert got.stats.spans == ref.stats.spans > 0 and got.stats.logs == ref.stats.logs > 0
    assert ref.stats.anomalies > 0
    assert sorted(_anomaly_keys(tmp_path / "data")) == sorted(
        (a.series, a.first_seen) for a in _reference_anomalies(feed)
    )

    # (a) exactly the expected rejects of every poison record, nothing else
    position = {id(s): i for i, s in enumerate(sends)}
    want = Counter()
    whole = 0
    for s, exp in zip(bad, expected, strict=True):
        topic, part, offset = where[position[id(s)]]
        for reason, raw in exp:
            want[(f"kafka:{topic}/{part}", offset, reason, raw)] += 1
            if reason.startswith(WHOLE_MESSAGE):
                assert raw == s[2]  # the original bytes
                whole += 1
    letters = read_letters(kafka_broker.bootstrap, f"{prefix}-deadletter")
    assert all(r["reason"] for r in letters)
    have = Counter((r["source"], r["offset_or_line"], r["reason"], raw_of(r)) for r in letters)
    assert ref.stats.rejects == 0  # the good feed alone is clean, so every letter is poison
    assert len(letters) == sum(want.values()) == got.stats.rejects >= N_POISON
    missing, extra = want - have, have - want
    assert not missing and not extra, (list(missing)[:3], list(extra)[:3])
    assert whole > N_POISON // 3 and len(KINDS) == 13
