"""Slack notifications: Block Kit content, one message per incident, the durable outbox, storms.

Slack is a real HTTP server on 127.0.0.1 (``slack_server.py``) and the notifier uses its real
slack_sdk clients; time is an injected clock, so backoff is checked without sleeping.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_server import Reply, SlackServer

from aiops.act.model import Action, Decision
from aiops.correlate.contract import (
    AnomalyRef,
    ChangeRef,
    ForecastRef,
    Incident,
    RootCause,
)
from aiops.errors import ConfigError
from aiops.notify import blocks, changes
from aiops.notify.config import NotifyConfig
from aiops.notify.notifier import Notifier
from aiops.store.sqlite import Store

T0 = 1_700_000_000.0
NS = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def incident(id: str = "inc-1", **kw) -> Incident:
    base = {
        "id": id, "opened_at_unix_nano": int(T0 * NS), "updated_at_unix_nano": int(T0 * NS), "status": "open",
        "kind": "detected", "severity": "critical", "services": ["checkout", "db"],
        "root_causes": [RootCause(service="db", score=0.82, reason="latency rose first, callers followed",
                                  indicators=["db/query.duration:p99", "db/cpu"]),
                        RootCause(service="checkout", score=0.31, reason="calls db", indicators=[])],
        "anomalies": [AnomalyRef(series=f"db/m{i}", service="db", first_seen_unix_nano=int((T0 + 30 * i) * NS),
                                 score=0.9) for i in range(4)],
        "changes": [ChangeRef(service="db", version="v2.1", at_unix_nano=int((T0 - 60) * NS))],
        "suggested_playbook": "scale-out",
    }  # fmt: skip
    return Incident(**{**base, **kw})


def action(status: str = "proposed", **kw) -> Action:
    base = {"id": "act-1", "incident_id": "inc-1", "playbook": "scale-out", "service": "db",
            "params": {"replicas": 3}, "status": status, "reason": "saturation", "proposed_at": T0,
            "expires_at": T0 + 3600}  # fmt: skip
    return Action(**{**base, **kw})


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    server = SlackServer().start()
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "aiops.db")
    yield s
    s.close()


def webhook_notifier(store: Store, slack: SlackServer, clock: Clock, **kw) -> Notifier:
    config = NotifyConfig(webhook_url=f"{slack.url}/hook", public_url="https://aiops.example", timeout_s=2, **kw)
    return Notifier(store, config, clock=clock)


def bot_notifier(store: Store, slack: SlackServer, clock: Clock, **kw) -> Notifier:
    config = NotifyConfig(bot_token="xoxb-test", channel="C1", api_url=f"{slack.url}/api/", timeout_s=2, **kw)
    return Notifier(store, config, clock=clock)


def all_blocks_text(message: dict) -> str:
    return str(message["blocks"])


# -- Block Kit ---------------------------------------------------------------------------------


def test_message_shows_causes_changes_link_and_sparkline_without_buttons() -> None:
    msg = blocks.incident_message(incident(), None, "https://aiops.example")
    assert msg["blocks"][0]["type"] == "header"
    assert "CRITICAL · detected · open" in msg["blocks"][0]["text"]["text"]
    text = all_blocks_text(msg)
    assert "latency rose first, callers followed" in text and "`db/query.duration:p99`" in text
    assert "`v2.1`" in text and "https://aiops.example/incidents/inc-1" in text
    assert "anomaly onsets over 90 s: `█▁▁▁█▁▁▁█▁▁█`" in text  # onsets at 0, 30, 60, 90 s
    assert not [b for b in msg["blocks"] if b["type"] == "actions"]
    assert msg["text"].startswith("[CRITICAL] detected incident inc-1 (open): checkout, db — likely root cause db")


def test_proposed_action_gets_approve_and_reject_buttons_with_the_action_id() -> None:
    msg = blocks.incident_message(incident(), action(required_approvals=2), "https://aiops.example")
    [buttons] = [b for b in msg["blocks"] if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in buttons["elements"]] == [("approve", "act-1"), ("reject", "act-1")]
    text = all_blocks_text(msg)
    assert "`replicas=3`" in text and "Approvals: 0/2" in text and "expires <!date^1700003600^" in text
    assert "awaiting approval" in msg["text"]


def test_decided_action_shows_the_outcome_and_no_buttons() -> None:
    done = action("succeeded", decisions=[Decision(who="alice", role="approver", approve=True, at=T0)],
                  exit_code=0, verification="passed")  # fmt: skip
    msg = blocks.incident_message(incident(), done, "https://aiops.example", ["playbook scale-out succeeded"])
    assert not [b for b in msg["blocks"] if b["type"] == "actions"]
    text = all_blocks_text(msg)
    assert "*succeeded*" in text and "approved by alice" in text and "exit code 0" in text
    assert "verification passed" in text and "Update: playbook scale-out succeeded" in text
    assert "playbook scale-out succeeded" in msg["text"]


def test_predicted_incident_shows_the_forecast_and_text_is_escaped() -> None:
    forecast = ForecastRef(series="db/mem", service="db", slo="memory of limit > 0.9", threshold=0.9,
                           predicted_at_unix_nano=int(T0 * NS), probability=0.93,
                           expected_breach_unix_nano=int((T0 + 900) * NS), earliest_breach_unix_nano=None,
                           latest_breach_unix_nano=None, model="ets", fit={}, outcome="pending",
                           outcome_at_unix_nano=None)  # fmt: skip
    inc = incident(kind="predicted", forecast=forecast, anomalies=[],
                   root_causes=[RootCause(service="db", score=1, reason="a <b> & c", indicators=[])])  # fmt: skip
    msg = blocks.incident_message(inc, None, "https://aiops.example")
    text = all_blocks_text(msg)
    assert "`memory of limit &gt; 0.9`" in text and "expected to break <!date^1700000900^" in text
    assert "p = 0.93" in text and "a &lt;b&gt; &amp; c" in text and "anomaly onsets" not in text


def test_digest_lists_the_held_back_incidents() -> None:
    entries = [{"id": f"inc-{i}", "severity": "warning", "services": ["svc"]} for i in range(30)]
    msg = blocks.digest_message(entries, "https://aiops.example")
    assert msg["text"].startswith("30 more incidents") and "inc-0 (svc)" in msg["text"]
    assert "…and 5 more" in all_blocks_text(msg)


def test_meaningful_changes() -> None:
    before = changes.state(incident(), None)
    assert changes.changes(None, before) == []
    assert changes.changes(before, changes.state(incident(anomalies=[]), None)) == []  # cosmetic
    swapped = incident(status="resolved", root_causes=incident().root_causes[::-1])
    assert changes.changes(before, changes.state(swapped, None)) == ["resolved", "top root cause now checkout"]
    proposed = changes.state(incident(), action())
    assert changes.changes(before, proposed) == ["playbook scale-out proposed"]
    approved = action(decisions=[Decision(who="bob", role="approver", approve=True, at=T0)], required_approvals=2)
    assert changes.changes(proposed, changes.state(incident(), approved)) == ["approved by bob"]


# -- one message per incident --------------------------------------------------------------------


def test_bot_token_posts_once_then_edits_in_place(store: Store, slack: SlackServer) -> None:
    clock = Clock()
    n = bot_notifier(store, slack, clock)
    n.incident(incident())
    assert n.dispatch() == 1
    [post] = slack.to("/api/chat.postMessage")
    assert post.body["channel"] == "C1" and post.headers["Authorization"] == "Bearer xoxb-test"
    assert "inc-1" in post.body["text"]

    n.incident(incident(), action())  # proposal: goes out at once
    assert n.dispatch() == 1
    [edit] = slack.to("/api/chat.update")
    assert edit.body["ts"] == "1700000000.000001" and "approve" in str(edit.body["blocks"])

    n.incident(incident(anomalies=incident().anomalies[:2]))  # cosmetic: edited, but not before the interval
    assert n.dispatch() == 0
    clock.t += 10
    assert n.dispatch() == 1
    edits = slack.to("/api/chat.update")
    assert len(edits) == 2 and "approve" in str(edits[1].body["blocks"])  # the known action is kept
    assert len(slack.to("/api/chat.postMessage")) == 1 and n.depth() == 0

    n.incident(incident(anomalies=incident().anomalies[:2]))  # the very same message: nothing to send
    clock.t += 60
    assert n.dispatch() == 0


def test_webhook_mode_coalesces_and_sends_only_meaningful_changes(store: Store, slack: SlackServer) -> None:
    clock = Clock()
    n = webhook_notifier(store, slack, clock)
    n.incident(incident())
    n.incident(incident(anomalies=incident().anomalies[:3]))  # replaces the unsent first post
    assert n.depth() == 1
    assert n.dispatch() == 1

    n.incident(incident(anomalies=incident().anomalies[:2]))  # cosmetic, cannot edit: not sent
    assert n.depth() == 0
    n.incident(incident(root_causes=incident().root_causes[::-1]))
    n.incident(incident(status="resolved", root_causes=incident().root_causes[::-1]))
    assert n.depth() == 1 and n.stats["coalesced"] == 2
    clock.t += 10
    assert n.dispatch() == 1
    posts = slack.to("/hook")
    assert len(posts) == 2
    assert "update: top root cause now checkout; resolved" in posts[1].body["text"]
    assert "✅" in posts[1].body["blocks"][0]["text"]["text"]


def test_response_url_edits_the_original_after_an_interaction(store: Store, slack: SlackServer) -> None:
    clock = Clock()
    n = webhook_notifier(store, slack, clock)
    n.incident(incident(), action())
    assert n.dispatch() == 1
    n.remember_response_url("inc-1", f"{slack.url}/respond/abc")
    approved = action("approved", decisions=[Decision(who="alice", role="approver", approve=True, at=T0)])
    n.action_changed(approved)  # the incident comes from what the notifier already knows
    assert n.dispatch() == 1
    [edit] = slack.to("/respond/abc")
    assert edit.body["replace_original"] is True
    assert "approved by alice" in str(edit.body["blocks"]) and '"approve"' not in str(edit.body["blocks"])
    n.incident(incident(anomalies=incident().anomalies[:1]))  # cosmetic, but editable in place now
    clock.t += 10
    assert n.dispatch() == 1 and len(slack.to("/respond/abc")) == 2
    clock.t += 1800  # Slack honours a response_url for 30 minutes: back to follow-ups, only if meaningful
    n.incident(incident(anomalies=incident().anomalies[:2]))
    assert n.depth() == 0
    assert len(slack.to("/hook")) == 1


# -- the outbox ----------------------------------------------------------------------------------


def test_receiver_down_for_a_while_nothing_lost_nothing_doubled(store: Store, slack: SlackServer) -> None:
    clock = Clock()
    n = webhook_notifier(store, slack, clock, retry_base_s=1, retry_max_s=30)
    slack.stop()
    for i in range(5):
        n.incident(incident(f"inc-{i}"))
    n.incident(incident("inc-0", status="resolved"))  # coalesced into inc-0's unsent first post
    for _ in range(20):  # ten minutes of outage, a dispatch every 30 s
        assert n.dispatch() == 0
        clock.t += 30
    assert n.depth() == 5 and n.stats["retried"] >= 10
    slack.start()
    clock.t += 30
    assert n.dispatch() == 5
    assert n.depth() == 0 and n.dispatch() == 0
    ids = Counter(r.body["text"].split(" incident ")[1].split(" ")[0] for r in slack.to("/hook"))
    assert ids == {f"inc-{i}": 1 for i in range(5)}
    assert [r.body["text"] for r in slack.to("/hook") if " inc-0 (resolved)" in r.body["text"]]


def test_default_backoff_notices_slack_back_within_30_s_of_a_five_minute_outage(store: Store,
                                                                               slack: SlackServer) -> None:  # fmt: skip
    """The cap on the pause bounds the delay after an outage; the pause being global bounds the load during it."""
    clock = Clock()
    n = webhook_notifier(store, slack, clock)
    slack.stop()
    for i in range(3):
        n.incident(incident(f"inc-{i}"))
    while clock.t < T0 + 300:
        n.dispatch()
        clock.t += 1
    assert n.depth() == 3 and n.stats["failed"] == 0
    assert n.stats["retried"] <= 30, "one probe per pause, not one per waiting message"
    slack.start()
    back = clock.t
    while n.dispatch() == 0:
        clock.t += 1
        assert clock.t - back <= 30, "still waiting on the backoff long after Slack came back"
    n.dispatch()
    assert n.depth() == 0 and len(slack.to("/hook")) == 3


def test_429_retry_after_is_honoured(store: Store, slack: SlackServer) -> None:
    clock = Clock()
    n = webhook_notifier(store, slack, clock)
    slack.replies = [Reply(429, "rate_limited", {"Retry-After": "30"})]
    n.incident(incident("inc-1"))
    n.incident(incident("inc-2"))
    assert n.dispatch() == 0 and len(slack.requests) == 1
    for dt in (1, 10, 29.9):  # nothing at all goes out before Slack's 30 s
        assert n.dispatch(T0 + dt) == 0
    assert len(slack.requests) == 1
    assert n.dispatch(T0 + 30) == 2 and len(slack.requests) == 3


def test_5xx_is_retried_with_backoff(store: Store, slack: SlackServer) -> None:
    clock = Clock()
    n = webhook_notifier(store, slack, clock, retry_base_s=2, retry_max_s=100)
    slack.replies = [Reply(500, "boom"), Reply(503, "busy"), Reply(502, "bad gateway")]
    n.incident(incident())
    attempts: list[float] = []
    while n.depth() and clock.t < T0 + 60:
        before = len(slack.requests)
        n.dispatch()
        if len(slack.requests) > before:
            attempts.append(clock.t - T0)
        clock.t += 0.1
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(attempts) == 4 and n.stats["retried"] == 3 and n.stats["sent"] == 1
    for gap, full in zip(gaps, (2, 4, 8), strict=True):  # doubling, with jitter in [0.5, 1] of it
        assert full * 0.5 <= gap <= full + 0.2


def test_400_goes_dead_and_is_audited_without_blocking_others(store: Store, slack: SlackServer) -> None:
    clock = Clock()
    n = webhook_notifier(store, slack, clock)
    slack.replies = [Reply(400, "invalid_payload")]
    n.incident(incident("inc-1"))
    n.incident(incident("inc-2"))
    assert n.dispatch() == 1
    assert n.stats["failed"] == 1 and n.depth() == 0
    [entry] = store.audit_log(target="inc-1")
    assert entry["action"] == "slack.dead" and not entry["ok"]
    assert entry["detail"]["reason"] == "HTTP 400: invalid_payload"
    assert store.query("SELECT status, error FROM outbox WHERE grp = 'inc-1'") == [
        ("dead", "HTTP 400: invalid_payload")
    ]


def test_web_api_errors(store: Store, slack: SlackServer) -> None:
    clock = Clock()
    n = bot_notifier(store, slack, clock)
    slack.replies = [
        Reply(200, {"ok": False, "error": "internal_error"}),
        Reply(200, {"ok": False, "error": "channel_not_found"}),
    ]
    n.incident(incident())
    assert n.dispatch() == 0 and n.stats["retried"] == 1
    assert n.dispatch(T0 + 5) == 0 and n.stats["failed"] == 1
    assert store.audit_log(target="inc-1")[0]["detail"]["reason"] == "ok=false: channel_not_found"


def test_give_up_horizon_marks_dead(store: Store, slack: SlackServer) -> None:
    clock = Clock()
    n = webhook_notifier(store, slack, clock, retry_base_s=10, retry_max_s=10, give_up_after_s=60)
    slack.stop()
    n.incident(incident())
    while n.depth():
        n.dispatch()
        clock.t += 1
    assert n.stats["failed"] == 1 and clock.t - T0 < 70
    assert store.audit_log(target="inc-1")[0]["detail"]["reason"].startswith("gave up after 60 s")


def test_restart_picks_up_pending_messages(tmp_path: Path, slack: SlackServer) -> None:
    clock = Clock()
    first = Store(tmp_path / "aiops.db")
    n = bot_notifier(first, slack, clock)
    n.incident(incident("inc-1"))
    assert n.dispatch() == 1
    n.incident(incident("inc-1", status="resolved"))
    n.incident(incident("inc-2"))
    first.close()  # the process dies before sending

    second = Store(tmp_path / "aiops.db")
    again = bot_notifier(second, slack, clock)
    assert again.depth() == 2
    clock.t += 10
    assert again.dispatch() == 2
    [edit] = slack.to("/api/chat.update")
    assert edit.body["ts"] == "1700000000.000001" and "(resolved)" in edit.body["text"]
    assert len(slack.to("/api/chat.postMessage")) == 2
    second.close()


# -- storms --------------------------------------------------------------------------------------


def test_storm_of_100_incidents_is_capped_and_summarised(store: Store, slack: SlackServer) -> None:
    clock = Clock()
    n = webhook_notifier(store, slack, clock, max_per_minute=10)
    for i in range(100):
        n.incident(incident(f"inc-{i:03d}", services=[f"svc-{i}"]))
        clock.t += 0.1
    n.incident(incident("inc-050", services=["svc-50"], status="resolved"))  # held back: stays quiet
    assert n.dispatch() == 10 and n.stats["suppressed"] == 90
    clock.t = T0 + 61
    assert n.dispatch() == 1 and n.depth() == 0
    posts = slack.to("/hook")
    assert len(posts) == 11
    digest = posts[-1].body["text"]
    assert digest.startswith("90 more incidents") and "inc-010 (svc-10)" in digest and "inc-034" in digest
    n.incident(incident("inc-099", services=["svc-99"]), action(id="act-9", incident_id="inc-099"))
    assert n.dispatch() == 1  # a proposal waits on a person: it gets its own message with buttons
    assert '"approve"' in str(slack.to("/hook")[-1].body["blocks"]).replace("'", '"')


def test_needs_a_destination(store: Store) -> None:
    with pytest.raises(ConfigError):
        Notifier(store, NotifyConfig())


def test_run_delivers_from_a_background_thread(store: Store, slack: SlackServer) -> None:
    n = Notifier(store, NotifyConfig(webhook_url=f"{slack.url}/hook", timeout_s=2))  # real clock
    stop = threading.Event()
    worker = threading.Thread(target=n.run, args=(stop, 0.02))
    worker.start()
    try:
        for i in range(5):
            n.incident(incident(f"inc-{i}"))
        deadline = time.monotonic() + 10
        while n.depth() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join(5)
    assert not worker.is_alive() and n.depth() == 0 and len(slack.to("/hook")) == 5


def test_queueing_never_raises_into_the_pipeline(tmp_path: Path, slack: SlackServer) -> None:
    broken = Store(tmp_path / "aiops.db")
    n = webhook_notifier(broken, slack, Clock())
    broken.close()  # the database is gone: log, count, carry on
    n.incident(incident())
    n.action_changed(action())
    n.remember_response_url("inc-1", f"{slack.url}/respond/x")
    assert n.stats["errors"] == 3
