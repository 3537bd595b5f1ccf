"""``aiops run`` with Slack down for five real minutes: afterwards every message arrives, once, in order.

Claim: while the Slack webhook is unreachable (connection refused for 2 minutes), rate limiting
(429 with ``Retry-After`` for 1 minute) and failing (503 for 2 minutes), the service keeps
consuming telemetry from Kafka and incidents keep opening, changing and resolving; once Slack
answers again, within ``RECOVERY_S``:

- every message the notifier's outbox (in the service's SQLite) marks sent reached Slack with a
  2xx exactly once, no other message reached it, and none was given up (no row dead or pending);
- each incident's messages arrived in outbox order, and the last one shows the status the
  incident has in SQLite (an incident that opened and resolved during the outage says so);
- no request came sooner than a 429's ``Retry-After`` allowed.

The outage is wall-clock time, not an injected clock: the backoff cap, the give-up horizon and
the global pause are the ones the default configuration gives the real process.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from service_harness import _committed, _env, _start, _stop, _wait
from slack_server import Reply, SlackServer

from aiops.sim import FaultSpec, Simulator
from aiops.sim.kafka import produce
from aiops.store.sqlite import Store

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
OUTAGE_S = 300  # the requirement: five minutes
REFUSED_UNTIL_S, RATE_LIMITED_UNTIL_S = 120, 180  # then 503s until OUTAGE_S
RETRY_AFTER_S = 10
SLOT_S = 30  # a slice of telemetry every SLOT_S of the outage ...
SLICE_S = 600.0  # ... of this many simulated seconds
BEFORE_S = 1800.0  # simulated seconds produced before the outage: the first incident is open by then
RECOVERY_S = 45.0  # Slack back -> everything delivered


def _simulator(start: int) -> Simulator:
    """Four faults, 25 to 125 simulated minutes in: one incident open before the outage, three during it."""
    return Simulator(8, 3, start, faults=[
        FaultSpec("cart", "bad_release", 1500, 600), FaultSpec("postgres", "latency", 3600, 900),
        FaultSpec("catalog", "errors", 5400, 600), FaultSpec("checkout", "cpu", 6900, 900),
    ])  # fmt: skip


def _health(data: Path) -> dict[str, Any]:
    url = f"http://127.0.0.1:{(data / 'api.port').read_text()}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:  # 503: degraded, same body
        with e:
            return json.loads(e.read())


def _canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True)


def test_slack_down_five_minutes_every_message_delivered_once_in_order(kafka_broker, unique_topic_prefix,
                                                                       tmp_path):  # fmt: skip
    prefix, broker = unique_topic_prefix, kafka_broker
    topics = {"metrics": f"{prefix}-metrics", "logs": f"{prefix}-logs", "spans": f"{prefix}-spans"}
    broker.create_topics([*topics.values(), f"{prefix}-deadletter"], partitions=1)
    sim = _simulator(time.time_ns() - 4 * 3600 * 10**9)
    produced = 0

    def feed(seconds: float) -> None:
        nonlocal produced
        produced += sum(produce(sim, broker.bootstrap, seconds, topics)["messages"].values())

    def settled() -> bool:
        return sum(_committed(broker.bootstrap, f"{prefix}-group").values()) == produced and \
            _health(data)["checks"]["slack_outbox"]["depth"] == 0  # fmt: skip

    slack = SlackServer().start()
    log, data = tmp_path / "run.log", tmp_path / "data"
    env = _env(broker.bootstrap, prefix, data, AIOPS_KAFKA_TOPICS_METRICS=topics["metrics"],
               AIOPS_KAFKA_TOPIC_FORMATS="{}", AIOPS_SLACK_WEBHOOK_URL=f"{slack.url}/hook",
               AIOPS_EXECUTOR__PLAYBOOKS_DIR=str(ROOT / "playbooks"))  # fmt: skip
    proc = _start(env, log)
    try:
        feed(BEFORE_S)
        _wait(lambda: (data / "api.port").exists() and settled() and slack.requests, 90,
              "the first incident posted before the outage", [proc])  # fmt: skip
        before = len(slack.requests)
        outage = time.time()
        slack.stop()
        for k in range(OUTAGE_S // SLOT_S):
            if k * SLOT_S == REFUSED_UNTIL_S:
                slack.failing = Reply(429, "rate_limited", {"Retry-After": str(RETRY_AFTER_S)})
                slack.start()
            elif k * SLOT_S == RATE_LIMITED_UNTIL_S:
                slack.failing = Reply(503, "service unavailable")
            feed(SLICE_S)
            time.sleep(max(0.0, outage + (k + 1) * SLOT_S - time.time()))
        assert proc.poll() is None, f"aiops run died during the outage:\n{log.read_text()[-3000:]}"
        waiting = _health(data)["checks"]["slack_outbox"]["depth"]
        slack.failing = None
        back = time.time()
        _wait(settled, 2 * RECOVERY_S, "every message delivered after the outage", [proc])
    finally:
        try:
            _stop(proc, log)
        finally:
            slack.stop()

    store = Store(data / "aiops.db")
    try:
        incidents = store.incidents()
        threads = {r[0]: (r[1], r[2]) for r in store.query("SELECT id, first_at, suppressed FROM notify_incidents")}
        rows = store.query("SELECT seq, grp, status, body FROM outbox ORDER BY seq")
    finally:
        store.close()

    # --- the outage was real and the engine kept producing messages through it ----------------
    during = [r for r in slack.requests[before:] if r.at < back]
    assert not [r for r in during if r.status < 300], "a message got through during the outage"
    assert {r.status for r in during} == {429, 503}, "both the rate limit and the failure were met"
    assert "Connection refused" in log.read_text(), "the notifier tried while nothing listened"
    assert waiting >= 3, f"only {waiting} messages waited for Slack"
    opened_during = [i for i, (first_at, _) in threads.items() if outage < first_at < back]
    assert len(opened_during) >= 2, "incidents opened while Slack was down"
    assert len(incidents) == len(threads) >= 4

    # --- the 429's Retry-After was honoured ---------------------------------------------------
    for r, nxt in itertools.pairwise(slack.requests):
        if r.status == 429:
            assert nxt.at - r.at >= RETRY_AFTER_S - 0.5, f"a request {nxt.at - r.at:.1f} s after a 429"

    # --- everything arrived promptly, once each, in order, and nothing was given up ----------
    statuses = Counter(r[2] for r in rows)
    assert set(statuses) <= {"sent", "superseded", "skipped"}, statuses
    delivered = [r for r in slack.requests if r.status < 300]
    assert {r.path for r in slack.requests} == {"/hook"}
    late = max(r.at for r in delivered) - back
    assert late <= RECOVERY_S, f"the last message arrived {late:.0f} s after Slack came back"
    sent = {_canonical(json.loads(body)): (seq, grp) for seq, grp, status, body in rows if status == "sent"}
    arrivals = Counter(_canonical(r.body) for r in delivered)
    assert len(sent) == statuses["sent"], "two outbox rows with the same message"
    assert arrivals == Counter(dict.fromkeys(sent, 1)), "a message lost, doubled, or not the engine's"
    order: dict[str, list[int]] = {}
    for r in delivered:
        seq, grp = sent[_canonical(r.body)]
        order.setdefault(grp, []).append(seq)
    assert all(seqs == sorted(seqs) for seqs in order.values()), order
    last = {sent[_canonical(r.body)][1]: r.body["text"] for r in delivered}
    for inc in incidents:
        assert not threads[inc["id"]][1], f"{inc['id']} held back by the storm limit: nothing to compare"
        assert f"incident {inc['id']} ({inc['status']})" in last[inc["id"]], (inc["id"], inc["status"])
    assert "resolved" in {i["status"] for i in incidents if i["id"] in opened_during}
