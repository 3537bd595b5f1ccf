"""SQLite, the embedded default store: incidents, anomalies and pipeline checkpoints.

A checkpoint (pipeline state + the Kafka offsets it matches) and the outputs produced since the
previous one are written in ONE transaction. After a crash the consumer resumes from exactly that
state and those offsets, so replaying the tail reproduces the same anomalies and incident ids, and
the primary keys turn them into no-ops: effectively-once output over at-least-once delivery.
"""

from __future__ import annotations

import json
import sqlite3
import time
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
]


class Store:
    """One connection per process; WAL lets readers (the API) run beside the pipeline's writes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for i, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in filter(str.strip, sql.split(";")):
                    self.db.execute(stmt)
                self.db.execute(f"PRAGMA user_version = {i}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def commit(
        self,
        incidents: list[Incident],
        anomalies: list[Anomaly],
        checkpoint: tuple[str, bytes, dict[str, int]] | None = None,
    ) -> None:
        """Outputs and (optionally) a checkpoint, atomically."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT OR IGNORE INTO anomalies VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(a.id, a.series, a.service, a.first_seen, a.score, a.direction, a.value) for a in anomalies],
            )
            for inc in incidents:
                record = inc.model_dump_json()
                self.db.execute(
                    "INSERT INTO incidents VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                    "status=excluded.status, updated_at=excluded.updated_at, record=excluded.record "
                    "WHERE excluded.updated_at >= incidents.updated_at",
                    (inc.id, inc.status, inc.kind, inc.opened_at_unix_nano, inc.updated_at_unix_nano, record),
                )
                self.db.execute(
                    "INSERT OR IGNORE INTO incident_versions VALUES (?, ?, ?, ?)",
                    (inc.id, inc.updated_at_unix_nano, inc.status, record),
                )
            if checkpoint is not None:
                name, blob, offsets = checkpoint
                self.db.execute(
                    "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                    (name, time.time(), json.dumps(offsets), blob),
                )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def checkpoint(self, name: str) -> tuple[bytes, dict[str, int]] | None:
        row = self.db.execute("SELECT state, offsets FROM checkpoints WHERE name = ?", (name,)).fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def incidents(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self.db.execute("SELECT record FROM incidents ORDER BY opened_at, id")]

    def incident_versions(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT record FROM incident_versions ORDER BY updated_at, id")
        return [json.loads(r[0]) for r in rows]

    def anomalies(self) -> list[dict[str, Any]]:
        cols = ("id", "series", "service", "first_seen", "score", "direction", "value")
        rows = self.db.execute(f"SELECT {', '.join(cols)} FROM anomalies ORDER BY first_seen, id")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def close(self) -> None:
        self.db.close()
