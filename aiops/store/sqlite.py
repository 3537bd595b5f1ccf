"""SQLite, the embedded default store: incidents, anomalies, checkpoints, the audit log.

A checkpoint (pipeline state + the Kafka offsets it matches) and the outputs produced since the
previous one are written in ONE transaction. After a crash the consumer resumes from exactly that
state and those offsets, so replaying the tail reproduces the same anomalies and incident ids, and
the primary keys turn them into no-ops: effectively-once output over at-least-once delivery.

Each component (``core`` here; the notifier's outbox, the executor's actions, feedback ...) owns
its tables and an ordered list of migrations, applied once each and recorded per component in
``schema_versions``; components evolve independently and a database only ever moves forward.
One connection per process, guarded by a lock: the pipeline, the API's worker threads, the
notifier and the executor share it, and WAL lets another process (a second reader) read beside
the writer. Writes go through :meth:`Store.write` (``BEGIN IMMEDIATE`` … ``COMMIT``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiops.correlate.contract import Incident
from aiops.detect.episodes import Anomaly

MIGRATIONS = [
    """
    CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        kind TEXT NOT NULL,
        opened_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE TABLE incident_versions (
        id TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (id, updated_at, status)
    );
    CREATE TABLE anomalies (
        id TEXT PRIMARY KEY,
        series TEXT NOT NULL,
        service TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        score REAL NOT NULL,
        direction INTEGER NOT NULL,
        value REAL NOT NULL
    );
    CREATE INDEX anomalies_service ON anomalies (service, first_seen);
    CREATE TABLE checkpoints (
        name TEXT PRIMARY KEY,
        saved_at REAL NOT NULL,
        offsets TEXT NOT NULL,
        state BLOB NOT NULL
    );
    """,
    """
    CREATE TABLE incident_anomalies (
        anomaly_id TEXT NOT NULL,
        incident_id TEXT NOT NULL,
        PRIMARY KEY (anomaly_id, incident_id)
    );
    """,
]


AUDIT_MIGRATIONS = [
    """
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        who TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        ok INTEGER NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_target ON audit (target, seq);
    """,
]


class Store:
    """The process's one SQLite connection; every method is safe to call from any thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        legacy = self.db.execute("PRAGMA user_version").fetchone()[0]  # before per-component versions
        if legacy:
            self.db.execute("INSERT OR IGNORE INTO schema_versions VALUES ('core', ?)", (legacy,))
        self.migrate("core", MIGRATIONS)
        self.migrate("audit", AUDIT_MIGRATIONS)

    def migrate(self, component: str, migrations: Sequence[str]) -> None:
        """Apply ``component``'s migrations it has not had yet, each in its own transaction."""
        with self.lock:
            row = self.db.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
            version = row[0] if row else 0
            if version > len(migrations):
                raise RuntimeError(f"database schema of {component!r} is v{version}, newer than this code's "
                                   f"v{len(migrations)}: upgrade aiops")  # fmt: skip
            for i, sql in enumerate(migrations[version:], start=version + 1):
                with self.write() as db:
                    for stmt in filter(str.strip, sql.split(";")):
                        db.execute(stmt)
                    db.execute("INSERT OR REPLACE INTO schema_versions VALUES (?, ?)", (component, i))

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, all or nothing; nested use joins the outer one."""
        with self.lock:
            if self.db.in_transaction:
                yield self.db
                return
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.db.execute(sql, params).fetchall()

    def audit(self, who: str, action: str, target: str, ok: bool = True, **detail: Any) -> None:
        """Record a decision or a refusal: who, when, what, on what, and the details."""
        with self.write() as db:
            db.execute("INSERT INTO audit (at, who, action, target, ok, detail) VALUES (?, ?, ?, ?, ?, ?)",
                       (time.time(), who, action, target, int(ok), json.dumps(detail, default=str)))  # fmt: skip

    def audit_log(self, target: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        sql = "SELECT seq, at, who, action, target, ok, detail FROM audit"
        rows = self.query(sql + (" WHERE target = ?" if target else "") + " ORDER BY seq DESC LIMIT ?",
                          (target, limit) if target else (limit,))  # fmt: skip
        keys = ("seq", "at", "who", "action", "target", "ok", "detail")
        return [dict(zip(keys, (*r[:5], bool(r[5]), json.loads(r[6])), strict=True)) for r in rows]

    def commit(
        self,
        incidents: list[Incident],
        anomalies: list[Anomaly],
        checkpoint: tuple[str, bytes, dict[str, int]] | None = None,
    ) -> None:
        """Outputs and (optionally) a checkpoint, atomically."""
        with self.write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO anomalies VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(a.id, a.series, a.service, a.first_seen, a.score, a.direction, a.value) for a in anomalies],
            )
            for inc in incidents:
                record = inc.model_dump_json()
                db.execute(
                    "INSERT INTO incidents VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                    "status=excluded.status, kind=excluded.kind, updated_at=excluded.updated_at, "
                    "record=excluded.record WHERE excluded.updated_at >= incidents.updated_at",
                    (inc.id, inc.status, inc.kind, inc.opened_at_unix_nano, inc.updated_at_unix_nano, record),
                )
                db.execute(
                    "INSERT OR IGNORE INTO incident_versions VALUES (?, ?, ?, ?)",
                    (inc.id, inc.updated_at_unix_nano, inc.status, record),
                )
                db.executemany("INSERT OR IGNORE INTO incident_anomalies VALUES (?, ?)",
                               [(f"{a.series}@{a.first_seen_unix_nano}", inc.id) for a in inc.anomalies])  # fmt: skip
            if checkpoint is not None:
                name, blob, offsets = checkpoint
                db.execute(
                    "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                    (name, time.time(), json.dumps(offsets), blob),
                )

    def checkpoint(self, name: str) -> tuple[bytes, dict[str, int]] | None:
        rows = self.query("SELECT state, offsets FROM checkpoints WHERE name = ?", (name,))
        return None if not rows else (rows[0][0], json.loads(rows[0][1]))

    def incidents(self, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Latest version of each incident, oldest first (``limit``: the newest ``limit`` of them)."""
        where, params = (" WHERE status = ?", [status]) if status else ("", [])
        sql = f"SELECT record FROM incidents{where} ORDER BY opened_at DESC, id DESC"
        rows = self.query(sql + (" LIMIT ?" if limit else ""), [*params, *([limit] if limit else [])])
        return [json.loads(r[0]) for r in reversed(rows)]

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT record FROM incidents WHERE id = ?", (incident_id,))
        return json.loads(rows[0][0]) if rows else None

    def incident_of(self, anomaly_id: str) -> str | None:
        """The (first) incident an anomaly ``series@first_seen`` belongs to."""
        rows = self.query("SELECT incident_id FROM incident_anomalies WHERE anomaly_id = ? ORDER BY incident_id LIMIT 1",
                          (anomaly_id,))  # fmt: skip
        return rows[0][0] if rows else None

    def incident_versions(self) -> list[dict[str, Any]]:
        rows = self.query("SELECT record FROM incident_versions ORDER BY updated_at, id")
        return [json.loads(r[0]) for r in rows]

    def anomalies(self, service: str | None = None, since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        cols = ("id", "series", "service", "first_seen", "score", "direction", "value")
        where = " WHERE first_seen >= ?" + (" AND service = ?" if service else "")
        sql = f"SELECT {', '.join(cols)} FROM anomalies{where} ORDER BY first_seen DESC, id DESC"
        params: list[Any] = [since, *([service] if service else [])]
        rows = self.query(sql + (" LIMIT ?" if limit else ""), [*params, *([limit] if limit else [])])
        return [dict(zip(cols, r, strict=True)) for r in reversed(rows)]

    def close(self) -> None:
        with self.lock:
            self.db.close()
