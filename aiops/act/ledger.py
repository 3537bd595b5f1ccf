"""The ``actions`` table: every Action as JSON plus the columns the executor's queries need.

Every change of state is a conditional ``UPDATE … WHERE id = ? AND status = ?`` inside one
``BEGIN IMMEDIATE`` transaction, so of two threads or two processes sharing the database file
exactly one moves an action out of a given state; the other sees ``False`` and walks away.
A running action holds a lease (``lease_until``) its runner renews while the command runs; a
lease that lapsed means the process that held it died.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from aiops.act.model import Action

MIGRATIONS = [
    """
    CREATE TABLE actions (
        id TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL,
        playbook TEXT NOT NULL,
        service TEXT NOT NULL,
        status TEXT NOT NULL,
        verification TEXT NOT NULL,
        proposed_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        started_at REAL,
        lease_until REAL,
        dry_run INTEGER NOT NULL,
        record TEXT NOT NULL,
        UNIQUE (incident_id, playbook)
    );
    CREATE INDEX actions_status ON actions (status, proposed_at);
    CREATE INDEX actions_started ON actions (started_at, service);
    """,
]
_COLUMNS = "status = ?, verification = ?, expires_at = ?, started_at = ?, lease_until = ?, dry_run = ?, record = ?"


def insert(db: sqlite3.Connection, a: Action) -> bool:
    """Store a new proposal; False when one for this (incident, playbook) already exists."""
    cur = db.execute(
        "INSERT OR IGNORE INTO actions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        (a.id, a.incident_id, a.playbook, a.service, a.status, a.verification, a.proposed_at, a.expires_at,
         a.started_at, int(a.dry_run), a.model_dump_json()),
    )  # fmt: skip
    return cur.rowcount == 1


def save(db: sqlite3.Connection, a: Action, expect: str, lease_until: float | None = None) -> bool:
    """Write ``a`` if the stored action is still in status ``expect``; False if someone else moved it."""
    cur = db.execute(
        f"UPDATE actions SET {_COLUMNS} WHERE id = ? AND status = ?",
        (a.status, a.verification, a.expires_at, a.started_at, lease_until, int(a.dry_run), a.model_dump_json(),
         a.id, expect),
    )  # fmt: skip
    return cur.rowcount == 1


def renew(db: sqlite3.Connection, action_id: str, lease_until: float) -> None:
    db.execute("UPDATE actions SET lease_until = ? WHERE id = ? AND status IN ('running', 'reverting')",
               (lease_until, action_id))  # fmt: skip


def get(db: sqlite3.Connection, action_id: str) -> Action | None:
    row = db.execute("SELECT record FROM actions WHERE id = ?", (action_id,)).fetchone()
    return Action.model_validate_json(row[0]) if row else None


def select(db: sqlite3.Connection, where: str = "", params: tuple[Any, ...] = ()) -> list[Action]:
    sql = "SELECT record FROM actions" + (f" WHERE {where}" if where else "") + " ORDER BY proposed_at, id"
    return [Action.model_validate_json(r[0]) for r in db.execute(sql, params).fetchall()]


def started_since(db: sqlite3.Connection, since: float, service: str | None = None, exclude: str = "") -> int:
    """Real (not dry) runs started at or after ``since``, all services or one: the blast-radius count."""
    sql = "SELECT COUNT(*) FROM actions WHERE started_at >= ? AND dry_run = 0 AND id != ?"
    params: tuple[Any, ...] = (since, exclude)
    if service is not None:
        sql, params = sql + " AND service = ?", (*params, service)
    return int(db.execute(sql, params).fetchone()[0])
