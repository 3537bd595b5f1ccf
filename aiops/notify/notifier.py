"""Incidents to Slack: one message per incident, kept current, through the durable outbox.

**One message per incident.** With a bot token (``bot_token`` + ``channel``) the first message is
posted with chat.postMessage and every later version edits it with chat.update, using the ``ts``
stored per incident. An incoming webhook cannot edit, so in webhook mode the incident is posted
once; after someone presses a button, the interaction's ``response_url`` (remembered through
:meth:`Notifier.remember_response_url`) edits that message in place with ``replace_original``
for as long as Slack honours it (30 minutes, 5 uses); otherwise only *meaningful* changes
(:mod:`aiops.notify.changes`) go out, as follow-ups naming what changed. How a message is sent is
decided when it is sent, not when it is queued, so a ``ts`` or a ``response_url`` learnt in the
meantime is used.

**Coalescing.** A new version of an incident replaces its still-unsent message instead of queueing
a second one (their change notes are merged), and at most one edit/follow-up per incident goes out
every ``update_interval_s``; decisions on actions are not held back, since someone is waiting.

**Storm control.** At most ``max_per_minute`` incidents get a message of their own per minute. The
rest are listed in one digest ("N more incidents …"), sent when the minute is over, and stay quiet
afterwards unless a playbook is proposed for one: a proposal waits on a person, so it always gets
its own message with buttons (the executor's own rate limits bound how many there can be).

**Failure.** :meth:`incident` and :meth:`action_changed` only write SQLite; they never wait on
Slack and never raise into the pipeline. :meth:`dispatch` sends; a retryable failure pauses
all sending for the row's retry delay (Slack down, or rate-limited per app, affects every
message alike), a refusal marks the row dead and writes the audit log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiops.act.model import Action
from aiops.correlate.contract import Incident
from aiops.errors import ConfigError
from aiops.notify import blocks, changes
from aiops.notify.config import NotifyConfig
from aiops.notify.outbox import Outbox, Row
from aiops.notify.transport import Outcome, SlackTransport, Transport
from aiops.store.sqlite import Store

log = logging.getLogger(__name__)

MIGRATIONS = [
    """
    CREATE TABLE notify_incidents (
        id TEXT PRIMARY KEY,
        first_at REAL NOT NULL,
        suppressed INTEGER NOT NULL,
        incident TEXT NOT NULL,
        action TEXT,
        state TEXT NOT NULL,
        body_hash TEXT NOT NULL,
        ts TEXT,
        posted INTEGER NOT NULL,
        last_sent_at REAL,
        response_url TEXT,
        response_url_at REAL,
        response_url_uses INTEGER NOT NULL
    );
    CREATE INDEX notify_incidents_first ON notify_incidents (first_at);
    """,
]

DIGEST = "~digest"
STORM_WINDOW_S = 60.0
RESPONSE_URL_TTL_S = 1800.0  # Slack: a response_url works for 30 minutes ...
RESPONSE_URL_USES = 5  # ... and 5 times
PRUNE_EVERY_S = 3600.0
STATS = ("sent", "retried", "failed", "suppressed", "coalesced", "skipped", "errors")
_THREAD_COLS = ("id", "suppressed", "incident", "action", "state", "body_hash", "ts", "posted", "last_sent_at",
                "response_url", "response_url_at", "response_url_uses")  # fmt: skip


class Notifier:
    """Queues incident messages durably and delivers them; safe to call from any thread."""

    def __init__(self, store: Store, config: NotifyConfig, clock: Callable[[], float] = time.time,
                 transport: Transport | None = None) -> None:  # fmt: skip
        self.bot = bool(config.bot_token and config.channel)
        if not self.bot and not config.webhook_url:
            raise ConfigError("notify: set webhook_url (AIOPS_SLACK_WEBHOOK_URL), or bot_token and channel")
        self.store = store
        self.config = config
        self.clock = clock
        self.transport: Transport = transport or SlackTransport(config)
        self.outbox = Outbox(store, config)
        store.migrate("notify", MIGRATIONS)
        # sent; retried (attempts that failed and were rescheduled); failed (dead: refused, or gave up);
        # suppressed (into a digest); coalesced (replaced an unsent version); skipped; errors (ours)
        self.stats: dict[str, int] = Counter(dict.fromkeys(STATS, 0))
        self._paused_until = 0.0
        self._streak = 0  # retryable failures in a row, any message: Slack's health as seen from here
        self._pruned_at = 0.0
        self._sending = threading.Lock()

    # -- queueing: quick, SQLite only, never raises ----------------------------------------------

    def incident(self, incident: Incident, action: Action | None = None) -> None:
        """Queue the current version of ``incident`` (with its action, else the last one seen)."""
        try:
            self._queue(incident, action, urgent=action is not None)
        except Exception:  # a notification problem must not stop the pipeline
            self.stats["errors"] += 1
            log.exception("notify: cannot queue incident %s", incident.id)

    def action_changed(self, action: Action, incident: Incident | None = None) -> None:
        """Queue the incident's message again with the action's new state (decision, outcome, verification)."""
        try:
            if incident is None:
                incident = self._known_incident(action.incident_id)
            if incident is None:
                self.stats["errors"] += 1
                log.warning("notify: action %s refers to unknown incident %s", action.id, action.incident_id)
                return
            self._queue(incident, action, urgent=True)
        except Exception:  # as above
            self.stats["errors"] += 1
            log.exception("notify: cannot queue action %s", action.id)

    def remember_response_url(self, incident_id: str, response_url: str) -> None:
        """A Slack interaction's ``response_url``: the incident's next updates edit that message in place."""
        try:
            with self.store.write() as db:
                db.execute("UPDATE notify_incidents SET response_url = ?, response_url_at = ?, response_url_uses = 0 "
                           "WHERE id = ?", (response_url, self.clock(), incident_id))  # fmt: skip
        except Exception:  # as above
            self.stats["errors"] += 1
            log.exception("notify: cannot store response_url of %s", incident_id)

    def depth(self) -> int:
        """Messages waiting to be delivered."""
        return self.outbox.depth()

    def _queue(self, incident: Incident, action: Action | None, urgent: bool) -> None:
        now = self.clock()
        with self.store.write():
            thread = self._thread(incident.id)
            if action is None and thread and thread["action"]:
                action = Action.model_validate_json(thread["action"])
            state = changes.state(incident, action)
            if thread is None:
                self._first(incident, action, state, now)
            elif thread["suppressed"] and not self._promote(thread, action):
                self._save(incident.id, incident, action, state)
            else:
                self._update(thread, incident, action, state, now, urgent)

    def _first(self, incident: Incident, action: Action | None, state: changes.State, now: float) -> None:
        recent = self.store.query("SELECT COUNT(*) FROM notify_incidents WHERE suppressed = 0 AND first_at > ?",
                                  (now - STORM_WINDOW_S,))[0][0]  # fmt: skip
        suppressed = recent >= self.config.max_per_minute and not _proposed(action)
        body = blocks.incident_message(incident, action, self.config.public_url)
        with self.store.write() as db:
            db.execute(
                "INSERT INTO notify_incidents (id, first_at, suppressed, incident, action, state, body_hash, posted, "
                "response_url_uses) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0)",
                (incident.id, now, int(suppressed), incident.model_dump_json(),
                 action.model_dump_json() if action else None, json.dumps(state), _hash(body)),
            )  # fmt: skip
            if suppressed:
                self._digest(incident, now)
            else:
                self.outbox.put(incident.id, "incident", body, [], [], now, now)

    def _promote(self, thread: dict[str, Any], action: Action | None) -> bool:
        """A held-back incident gets its own message once a playbook waits for approval on it."""
        if not _proposed(action):
            return False
        with self.store.write() as db:
            db.execute("UPDATE notify_incidents SET suppressed = 0 WHERE id = ?", (thread["id"],))
        return True

    def _update(self, thread: dict[str, Any], incident: Incident, action: Action | None, state: changes.State,
                now: float, urgent: bool) -> None:  # fmt: skip
        pending = self.outbox.latest_pending(incident.id)
        changed = changes.merge(pending.changes if pending else [], changes.changes(json.loads(thread["state"]), state))
        body = blocks.incident_message(incident, action, self.config.public_url, changed)
        editable = self.bot or self._response_url(thread, now) is not None
        worth_sending = _hash(body) != thread["body_hash"] and (pending is not None or editable or changed)
        if worth_sending:
            not_before = now if urgent else max(now, (thread["last_sent_at"] or 0.0) + self.config.update_interval_s)
            if pending is not None:  # a newer version never delays the one it replaces
                not_before = min(not_before, pending.next_at)
            self.outbox.put(incident.id, "incident", body, changed, [], now, not_before, replaces=pending)
            self.stats["coalesced"] += pending is not None
        self._save(incident.id, incident, action, state, _hash(body) if worth_sending else None)

    def _digest(self, incident: Incident, now: float) -> None:
        pending = self.outbox.latest_pending(DIGEST)
        entries = [*(pending.meta if pending else []),
                   {"id": incident.id, "severity": incident.severity, "services": incident.services}]  # fmt: skip
        body = blocks.digest_message(entries, self.config.public_url)
        next_at = pending.next_at if pending else now + STORM_WINDOW_S  # one digest per window
        self.outbox.put(DIGEST, "digest", body, [], entries, now, next_at, replaces=pending)
        self.stats["suppressed"] += 1

    def _save(self, incident_id: str, incident: Incident, action: Action | None, state: changes.State,
              body_hash: str | None = None) -> None:  # fmt: skip
        with self.store.write() as db:
            db.execute("UPDATE notify_incidents SET incident = ?, action = ?, state = ?, "
                       "body_hash = COALESCE(?, body_hash) WHERE id = ?",
                       (incident.model_dump_json(), action.model_dump_json() if action else None,
                        json.dumps(state), body_hash, incident_id))  # fmt: skip

    def _thread(self, incident_id: str) -> dict[str, Any] | None:
        rows = self.store.query(f"SELECT {', '.join(_THREAD_COLS)} FROM notify_incidents WHERE id = ?", (incident_id,))
        return dict(zip(_THREAD_COLS, rows[0], strict=True)) if rows else None

    def _known_incident(self, incident_id: str) -> Incident | None:
        thread = self._thread(incident_id)
        if thread is not None:
            return Incident.model_validate_json(thread["incident"])
        record = self.store.incident(incident_id)
        return Incident.model_validate(record) if record else None

    def _response_url(self, thread: dict[str, Any], now: float) -> str | None:
        fresh = thread["response_url"] and now - thread["response_url_at"] < RESPONSE_URL_TTL_S
        return thread["response_url"] if fresh and thread["response_url_uses"] < RESPONSE_URL_USES else None

    # -- delivery ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event, interval_s: float = 0.2) -> None:
        """Dispatch until ``stop`` is set (the service runs this in its own thread)."""
        while not stop.is_set():
            try:
                self.dispatch()
            except Exception:  # e.g. the database briefly locked: try again next round
                self.stats["errors"] += 1
                log.exception("notify: dispatch failed")
            stop.wait(interval_s)

    def dispatch(self, now: float | None = None) -> int:
        """Send every due message once, in order per incident; returns how many were delivered."""
        with self._sending:
            now = self.clock() if now is None else now
            if now < self._paused_until:
                return 0
            if now - self._pruned_at > PRUNE_EVERY_S:
                self.outbox.prune(now)
                self._pruned_at = now
            delivered = 0
            for row in self.outbox.due(now):
                try:
                    outcome = self._send(row, now)
                except Exception as e:  # a custom transport's bug: keep the row, retry later
                    log.exception("notify: transport failed")
                    outcome = Outcome(ok=False, retryable=True, error=f"{type(e).__name__}: {e}")
                if outcome is None:
                    continue
                if outcome.ok:
                    delivered += 1
                    self._streak = 0
                elif outcome.retryable:
                    self._retry(row, now, outcome)
                    break  # Slack is down or asked us to wait: the other rows would fare no better
                else:
                    self._dead(row, now, outcome.error)
            return delivered

    def _send(self, row: Row, now: float) -> Outcome | None:
        """Deliver ``row`` the way the incident's state allows; None when there was nothing to send."""
        if row.kind == "digest":
            outcome = self._post(row.body)
            if outcome.ok:
                self.outbox.sent(row.seq, now)
                self.stats["sent"] += 1
            return outcome
        thread = self._thread(row.grp)
        assert thread is not None, "an incident row without its thread"
        url = None
        if self.bot and thread["ts"]:
            outcome = self.transport.update_message(self.config.channel or "", thread["ts"], row.body)
        elif self.bot or not thread["posted"]:
            outcome = self._post(row.body)
        elif url := self._response_url(thread, now):
            outcome = self.transport.webhook(url, row.body, replace_original=True)
            if not outcome.ok and not outcome.retryable:  # expired or used up early: fall back to follow-ups
                log.info("notify: response_url of %s refused (%s), falling back", row.grp, outcome.error)
                self._forget_response_url(row.grp)
                return None
        elif row.changes:
            outcome = self._post(row.body)
        else:
            self.outbox.skip(row.seq, now, "nothing meaningful to add, and no way to edit the message")
            self.stats["skipped"] += 1
            return None
        if outcome.ok:
            with self.store.write() as db:
                self.outbox.sent(row.seq, now)
                db.execute("UPDATE notify_incidents SET posted = 1, last_sent_at = ?, ts = COALESCE(ts, ?), "
                           "response_url_uses = response_url_uses + ? WHERE id = ?",
                           (now, outcome.ts, int(url is not None), row.grp))  # fmt: skip
            self.stats["sent"] += 1
        return outcome

    def _post(self, body: dict[str, Any]) -> Outcome:
        if self.bot:
            return self.transport.post_message(self.config.channel or "", body)
        return self.transport.webhook(self.config.webhook_url or "", body)

    def _retry(self, row: Row, now: float, outcome: Outcome) -> None:
        self._streak += 1
        delay = self.outbox.retry(row, now, outcome.error, outcome.retry_after, self._streak)
        if delay is None:
            self._dead(row, now, f"gave up after {self.config.give_up_after_s:.0f} s: {outcome.error}")
            return
        self._paused_until = now + delay
        self.stats["retried"] += 1
        log.warning("notify: Slack send failed (%s); retrying in %.1f s, %d waiting",
                    outcome.error, delay, self.outbox.depth())  # fmt: skip

    def _dead(self, row: Row, now: float, reason: str) -> None:
        self.outbox.dead(row.seq, now, reason)
        self.stats["failed"] += 1
        log.error("notify: Slack refused message %d for %s: %s", row.seq, row.grp, reason)
        self.store.audit("notifier", "slack.dead", row.grp, ok=False, seq=row.seq, kind=row.kind,
                         attempts=row.attempts + 1, reason=reason)  # fmt: skip

    def _forget_response_url(self, incident_id: str) -> None:
        with self.store.write() as db:
            db.execute("UPDATE notify_incidents SET response_url = NULL WHERE id = ?", (incident_id,))


def _proposed(action: Action | None) -> bool:
    return action is not None and action.status == "proposed"


def _hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
