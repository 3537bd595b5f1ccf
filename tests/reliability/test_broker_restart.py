"""``aiops run`` rides out a Kafka broker restart: nothing lost, nothing doubled, no service restart.

The broker is stopped (SIGTERM) and started again on the same ports and data dir while the service
is mid-way through the first half of a simulator feed (for longer than the consumer's session
timeout, so it also has to rejoin the group); the second half is produced after the broker is back. The service keeps running throughout and must end up exactly where an
in-process reference run over the whole feed ends up.
"""

from __future__ import annotations

import time

import pytest
from service_harness import (
    _anomaly_keys,
    _committed,
    _env,
    _reference,
    _reference_anomalies,
    _restored,
    _start,  # fmt: skip
    _stop,
    _wait,
)

from aiops.sim import FaultSpec, Simulator
from aiops.sim.kafka import produce
from aiops.store.sqlite import Store

pytestmark = pytest.mark.kafka

HALF_S = 25 * 60  # simulated seconds per half; the fault straddles the broker restart


def _simulator(start: int) -> Simulator:
    return Simulator(n_services=5, seed=11, start_unix_nano=start,
                     faults=[FaultSpec(service="postgres", kind="latency", start=1200, duration=600)])  # fmt: skip


def test_broker_restart_mid_stream_loses_nothing_and_duplicates_nothing(kafka_broker, unique_topic_prefix,
                                                                        tmp_path):  # fmt: skip
    prefix, broker = unique_topic_prefix, kafka_broker
    topics = {"metrics": f"{prefix}-metrics", "logs": f"{prefix}-logs", "spans": f"{prefix}-spans"}
    broker.create_topics([topics["metrics"]], partitions=2)
    broker.create_topics([topics["logs"], topics["spans"], f"{prefix}-deadletter"], partitions=1)
    start = time.time_ns() - 3 * 3600 * 10**9
    sim = _simulator(start)
    first = sum(produce(sim, broker.bootstrap, HALF_S, topics)["messages"].values())
    group = f"{prefix}-group"

    def committed() -> int:
        return sum(_committed(broker.bootstrap, group).values())

    log, data = tmp_path / "run.log", tmp_path / "data"
    env = _env(broker.bootstrap, prefix, data, AIOPS_KAFKA_TOPICS_METRICS=topics["metrics"],
               AIOPS_KAFKA_TOPIC_FORMATS="{}", AIOPS_KAFKA_MAX_POLL_RECORDS="20",
               AIOPS_CHECKPOINT_INTERVAL_S="0.2", AIOPS_KAFKA_SESSION_TIMEOUT_MS="2000")  # fmt: skip
    proc = _start(env, log)
    try:
        try:
            _wait(lambda: committed() > first * 0.2, 60, "a fifth of the first half committed", [proc])
            broker.stop()
            # Down for longer than the session timeout, so the group forgets the member: the
            # service has to fail commits, rejoin and resume where its state is, not where the
            # group last committed.
            time.sleep(3)
            assert proc.poll() is None, f"aiops run died with the broker:\n{log.read_text()[-3000:]}"
            broker.start()
        finally:
            if not broker.running:  # session-scoped: later tests need it, whatever happened here
                broker.start()
        at_restart = committed()
        assert at_restart < first, "the service finished the first half before the restart; proves nothing"
        second = sum(produce(sim, broker.bootstrap, HALF_S, topics)["messages"].values())
        _wait(lambda: committed() == first + second, 90, "the whole feed committed after the broker restart",
              [proc])  # fmt: skip
    finally:
        _stop(proc, log)

    feed = list(_simulator(start).run(2 * HALF_S))
    assert len(feed) == first + second
    got, ref = _restored(data), _reference(feed)
    assert got.stats.messages == len(feed)  # once each: no replay counted twice, none skipped
    assert got.stats.points == ref.stats.points > 0 and got.stats.rejects == 0
    assert got.stats.spans == ref.stats.spans and got.stats.logs == ref.stats.logs
    stored = _anomaly_keys(data)
    assert len(stored) == len(set(stored)), "an anomaly stored twice"
    expected = sorted((a.series, a.first_seen) for a in _reference_anomalies(feed))
    assert expected and sorted(stored) == expected
    store = Store(data / "aiops.db")
    try:
        incidents = store.incidents()
    finally:
        store.close()
    assert incidents, "the fault raised no incident"
    assert len({i["id"] for i in incidents}) == len(incidents)
    owners: dict[str, str] = {}
    for inc in incidents:
        for a in inc["anomalies"]:
            key = f"{a['series']}@{a['first_seen_unix_nano']}"
            assert key not in owners, f"anomaly {key} in two incidents"
            owners[key] = inc["id"]
    assert set(owners) <= {f"{s}@{t}" for s, t in stored}
