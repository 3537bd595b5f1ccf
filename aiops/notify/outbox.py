"""The durable outbox: a Slack message is a row before it is a request, so an outage loses nothing.

Rows belong to a *group* (an incident id, or the storm digest) and leave in ``seq`` order within
it: only a group's oldest pending row is ever due, so an update can never overtake the post it
edits, while one stuck incident does not hold the others back. A row is ``pending`` until a 2xx
marks it ``sent``; a failure worth retrying moves its ``next_at`` out by exponential backoff with
jitter (``retry_base_s`` doubling up to ``retry_max_s``, times 0.5–1 so a crowd of processes does
not retry in step) or by exactly the ``Retry-After`` Slack sent with a 429; a refusal no retry can
fix, or a message older than ``give_up_after_s``, goes ``dead`` with its reason. A newer version of
a still-unsent message *supersedes* it (status ``superseded``) and inherits its backoff and age,
so coalescing never resets a retry schedule or the give-up clock.

Delivery is at least once: a crash after Slack's 2xx and before the row is marked ``sent`` resends
that one message after restart. Finished rows are pruned after a week; dead ones are kept.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from aiops.notify.config import NotifyConfig
from aiops.store.sqlite import Store

MIGRATIONS = [
    """
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        grp TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        changes TEXT NOT NULL,
        meta TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        created_at REAL NOT NULL,
        next_at REAL NOT NULL,
        done_at REAL,
        error TEXT NOT NULL
    );
    CREATE INDEX outbox_pending ON outbox (status, grp, seq);
    """,
]

KEEP_DONE_S = 7 * 86400.0
_COLS = "seq, grp, kind, body, changes, meta, attempts, created_at, next_at"


@dataclass(frozen=True)
class Row:
    seq: int
    grp: str
    kind: str  # "incident" | "digest"
    body: dict[str, Any]  # the Slack message: text + blocks
    changes: list[str]  # what this message announces beyond the first post (empty: first post or cosmetic)
    meta: list[Any]  # digest: the incidents it lists
    attempts: int
    created_at: float
    next_at: float

    @classmethod
    def of(cls, r: tuple[Any, ...]) -> Row:
        return cls(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), json.loads(r[5]), r[6], r[7], r[8])


class Outbox:
    """Rows, their order and their retry schedule; what a row means to Slack is the notifier's business."""

    def __init__(self, store: Store, config: NotifyConfig, rng: random.Random | None = None) -> None:
        self.store = store
        self.config = config
        self.rng = rng or random.Random()
        store.migrate("outbox", MIGRATIONS)

    def latest_pending(self, grp: str) -> Row | None:
        """The newest unsent row of ``grp``: a new version of the message replaces it."""
        rows = self.store.query(f"SELECT {_COLS} FROM outbox WHERE status = 'pending' AND grp = ? "
                                "ORDER BY seq DESC LIMIT 1", (grp,))  # fmt: skip
        return Row.of(rows[0]) if rows else None

    def put(self, grp: str, kind: str, body: dict[str, Any], changes: list[str], meta: list[Any],
            now: float, next_at: float, replaces: Row | None = None) -> int:  # fmt: skip
        """Store a message (superseding ``replaces``, whose backoff and age it inherits); returns its seq."""
        attempts, created = 0, now
        with self.store.write() as db:
            if replaces is not None:
                db.execute("UPDATE outbox SET status = 'superseded', done_at = ? WHERE seq = ? AND status = 'pending'",
                           (now, replaces.seq))  # fmt: skip
                attempts, created = replaces.attempts, replaces.created_at
                if attempts:
                    next_at = max(next_at, replaces.next_at)
            cur = db.execute(
                "INSERT INTO outbox (grp, kind, body, changes, meta, status, attempts, created_at, next_at, error) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, '')",
                (grp, kind, json.dumps(body), json.dumps(changes), json.dumps(meta), attempts, created, next_at),
            )
            return int(cur.lastrowid or 0)

    def due(self, now: float) -> list[Row]:
        """Each group's oldest pending row, if due; longest-waiting first."""
        rows = self.store.query(
            f"SELECT {_COLS} FROM outbox o WHERE status = 'pending' AND next_at <= ? AND seq = "
            "(SELECT MIN(seq) FROM outbox WHERE grp = o.grp AND status = 'pending') ORDER BY next_at, seq",
            (now,),
        )
        return [Row.of(r) for r in rows]

    def sent(self, seq: int, now: float) -> None:
        """Delivered (even if superseded while in flight: it did reach Slack)."""
        self._finish(seq, now, "sent", "", only_pending=False)

    def dead(self, seq: int, now: float, reason: str) -> None:
        self._finish(seq, now, "dead", reason)

    def skip(self, seq: int, now: float, reason: str) -> None:
        self._finish(seq, now, "skipped", reason)

    def retry(
        self, row: Row, now: float, error: str, retry_after: float | None = None, streak: int = 0
    ) -> float | None:
        """Schedule the next attempt; returns the delay, or None when the give-up horizon is passed (caller: dead).

        The delay grows with the row's own attempts or with ``streak``, the failures in a row of
        the destination, whichever is more: while Slack is down, messages taking turns must not
        each restart the backoff from ``retry_base_s``.
        """
        attempts = row.attempts + 1
        if retry_after is not None:
            delay = retry_after
        else:
            delay = min(self.config.retry_max_s, self.config.retry_base_s * 2 ** (max(attempts, streak) - 1))
            delay *= self.rng.uniform(0.5, 1.0)
        horizon = self.config.give_up_after_s
        if horizon is not None and now + delay - row.created_at > horizon:
            return None
        with self.store.write() as db:
            db.execute("UPDATE outbox SET attempts = ?, next_at = ?, error = ? WHERE seq = ? AND status = 'pending'",
                       (attempts, now + delay, error, row.seq))  # fmt: skip
        return delay

    def depth(self) -> int:
        return int(self.store.query("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")[0][0])

    def prune(self, now: float) -> None:
        """Forget delivered, superseded and skipped rows after a week; dead ones stay for inspection."""
        with self.store.write() as db:
            db.execute("DELETE FROM outbox WHERE status IN ('sent', 'superseded', 'skipped') AND done_at < ?",
                       (now - KEEP_DONE_S,))  # fmt: skip

    def _finish(self, seq: int, now: float, status: str, reason: str, only_pending: bool = True) -> None:
        guard = " AND status = 'pending'" if only_pending else ""
        with self.store.write() as db:
            db.execute(f"UPDATE outbox SET status = ?, done_at = ?, error = ? WHERE seq = ?{guard}",
                       (status, now, reason, seq))  # fmt: skip
