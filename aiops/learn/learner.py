"""Expert feedback in, model changes out: each one versioned, measured, and reversible.

* A **false positive** on an anomaly makes that series need a larger excess to alert (the
  detector bank's feedback hook, ×½ per verdict). The change is replayed on the series'
  recorded points first (:mod:`aiops.learn.evaluate`); if it would take the series' sensitivity
  below ``min_feedback`` of its configured value, it waits for an approver's sign-off (the same
  ``/approvals`` endpoint), otherwise it goes live at once. Either way a new ``models/metrics``
  version records the change and its before/after figures.
* A **confirmed root cause** teaches the ranking which kinds of evidence point at real causes
  (:mod:`aiops.learn.weights`); a new ``models/ranking`` version records the weights and the
  ranking's AC@1 over all confirmed incidents before and after.
* **Revert**: any earlier version of ``metrics`` or ``ranking`` becomes live again, as a new version.

The detector bank belongs to the pipeline's thread: every change to it runs there, through
``run_in_pipeline`` (the service queues it between batches and waits for the result).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiops.detect.models import load_bank, save_json_model, versions
from aiops.errors import Conflict, Forbidden, InvalidRequest, NotFound
from aiops.learn import memory, weights
from aiops.learn.config import LearnConfig
from aiops.learn.evaluate import figures, replay_alerts
from aiops.pipeline import Pipeline
from aiops.store.sqlite import Store

T = TypeVar("T")

MIGRATIONS = [
    """
    CREATE TABLE feedback (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        who TEXT NOT NULL,
        target_kind TEXT NOT NULL,
        target_id TEXT NOT NULL,
        incident_id TEXT,
        series TEXT,
        first_seen INTEGER,
        verdict TEXT,
        root_cause TEXT,
        comment TEXT NOT NULL
    );
    CREATE INDEX feedback_incident ON feedback (incident_id);
    CREATE INDEX feedback_series ON feedback (series);
    CREATE TABLE model_changes (
        id TEXT PRIMARY KEY,
        at REAL NOT NULL,
        who TEXT NOT NULL,
        status TEXT NOT NULL,
        change TEXT NOT NULL,
        decided_by TEXT,
        decided_at REAL
    );
    """,
]


class Learner:
    def __init__(self, store: Store, models_dir: Path, run_in_pipeline: Callable[[Callable[[Pipeline], T]], T],
                 config: LearnConfig | None = None, fixed_by: Callable[[str], list[str]] = lambda _: [],
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.store = store
        self.models_dir = Path(models_dir)
        self.run_in_pipeline = run_in_pipeline
        self.config = config or LearnConfig()
        self.fixed_by = fixed_by
        self.clock = clock
        store.migrate("learn", MIGRATIONS)
        self.weights = self._latest_weights()

    # --- feedback ------------------------------------------------------------------------------
    def feedback(self, who: str, fb: Any) -> dict[str, Any]:
        """Store a verdict and apply what it teaches; return the record and its effect."""
        incident_id, series, first_seen = self._locate(fb.target, fb.id)
        with self.store.write() as db:
            cur = db.execute(
                "INSERT INTO feedback (at, who, target_kind, target_id, incident_id, series, first_seen, verdict, "
                "root_cause, comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.clock(), who, fb.target, fb.id, incident_id, series, first_seen, fb.verdict, fb.root_cause,
                 fb.comment),
            )  # fmt: skip
            seq = cur.lastrowid
        effect: dict[str, Any] = {}
        if fb.verdict == "false_positive" and series is not None:
            effect["retune"] = self._retune(who, series)
        if fb.root_cause and incident_id is not None:
            effect["ranking"] = self._teach_ranking(who, incident_id, fb.root_cause)
        return {"feedback_id": seq, "incident_id": incident_id, "series": series, "effect": effect}

    def feedback_for(self, incident_id: str) -> list[dict[str, Any]]:
        cols = ("seq", "at", "who", "target_kind", "target_id", "verdict", "root_cause", "comment")
        rows = self.store.query(f"SELECT {', '.join(cols)} FROM feedback WHERE incident_id = ? ORDER BY seq", (incident_id,))
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def _locate(self, kind: str, target_id: str) -> tuple[str | None, str | None, int | None]:
        """(incident id, series, first seen) of a feedback target; NotFound when it does not exist."""
        if kind == "incident":
            if self.store.incident(target_id) is None:
                raise NotFound(f"no incident {target_id}")
            return target_id, None, None
        series, _, at = target_id.rpartition("@")
        if not series or not at.isdigit():
            raise InvalidRequest(f"anomaly id {target_id!r} is not 'series@first_seen_unix_nano'")
        incident_id = self.store.incident_of(target_id)  # written with the incident, before the anomaly row
        if incident_id is None and not self.store.query("SELECT id FROM anomalies WHERE id = ?", (target_id,)):
            raise NotFound(f"no anomaly {target_id}")
        return incident_id, series, int(at)

    # --- detector retune -----------------------------------------------------------------------
    def _retune(self, who: str, series: str) -> dict[str, Any]:
        def measure(p: Pipeline) -> dict[str, Any]:
            if not p.detects:
                raise Conflict("the detectors run in the detect processes (aiops run --role detect); this incident "
                               "stage stores the verdict but cannot retune them")  # fmt: skip
            sid = p.series.index.get(series)
            if sid is None:
                raise NotFound(f"series {series} is not tracked by this engine")
            fb_now = float(p.bank.arrays["fb"][sid])
            fb_new = max(fb_now / 2.0, 1 / 64)
            sens = float(p.bank.arrays["sens"][sid])
            ts, x = p.recorder.series(sid)
            true_at, false_at = self._labels(series)
            before = after = None
            if len(ts):
                run = lambda f: figures(replay_alerts(series, ts, x, p.policy, p.bank.config, sens, f),  # noqa: E731
                                        true_at, false_at, self.config.match_s)  # fmt: skip
                before, after = run(fb_now).as_dict(), run(fb_new).as_dict()
            return {"kind": "retune", "series": series, "who": who, "feedback_before": fb_now,
                    "feedback_after": fb_new, "replayed_points": len(ts), "before": before, "after": after}  # fmt: skip

        change = self.run_in_pipeline(measure)
        if change["feedback_after"] < self.config.min_feedback:
            return self._hold(who, change)
        return self._apply(change)

    def _labels(self, series: str) -> tuple[list[int], list[int]]:
        rows = self.store.query("SELECT verdict, first_seen FROM feedback WHERE series = ? AND verdict IS NOT NULL",
                                (series,))  # fmt: skip
        return [t for v, t in rows if v == "true_positive"], [t for v, t in rows if v == "false_positive"]

    def _apply(self, change: dict[str, Any]) -> dict[str, Any]:
        def go(p: Pipeline) -> int:
            sid = p.series.index[change["series"]]
            p.bank.arrays["fb"][sid] = change["feedback_after"]
            return p.save_models(self.models_dir, change=change).version

        version = self.run_in_pipeline(go)
        return {**change, "status": "live", "version": version}

    def _hold(self, who: str, change: dict[str, Any]) -> dict[str, Any]:
        digest = hashlib.sha1(f"{change['series']}@{self.clock()}".encode()).hexdigest()[:10]
        change_id = f"model-{digest}"
        with self.store.write() as db:
            db.execute("INSERT INTO model_changes (id, at, who, status, change) VALUES (?, ?, ?, 'proposed', ?)",
                       (change_id, self.clock(), who, json.dumps(change)))  # fmt: skip
        self.store.audit(who, "model.change.proposed", change_id, series=change["series"],
                         feedback_after=change["feedback_after"])  # fmt: skip
        return {**change, "status": "needs_approval", "approval_id": change_id}

    def pending(self) -> list[dict[str, Any]]:
        rows = self.store.query("SELECT id, at, who, change FROM model_changes WHERE status = 'proposed' ORDER BY at")
        return [{"id": i, "status": "proposed", "proposed_at": at, "proposed_by": who, "change": json.loads(c)}
                for i, at, who, c in rows]  # fmt: skip

    def decide(self, change_id: str, who: str, role: str, approve: bool, comment: str = "") -> dict[str, Any]:
        """An approver's sign-off on a held model change; deciding twice is a conflict."""
        if role != "approver":
            self.store.audit(who, "model.change.forbidden", change_id, ok=False, role=role)
            raise Forbidden(f"{who} has role {role}; signing off a model change needs approver")
        rows = self.store.query("SELECT status, change FROM model_changes WHERE id = ?", (change_id,))
        if not rows:
            raise NotFound(f"no model change {change_id}")
        with self.store.write() as db:
            won = db.execute("UPDATE model_changes SET status = ?, decided_by = ?, decided_at = ? "
                             "WHERE id = ? AND status = 'proposed'",
                             ("approved" if approve else "rejected", who, self.clock(), change_id)).rowcount  # fmt: skip
        if not won:
            raise Conflict(f"model change {change_id} was already {rows[0][0]}")
        self.store.audit(who, "model.change." + ("approved" if approve else "rejected"), change_id, comment=comment)
        change = json.loads(rows[0][1])
        if not approve:
            return {**change, "id": change_id, "status": "rejected"}
        return {**self._apply({**change, "approved_by": who}), "id": change_id}

    # --- ranking -------------------------------------------------------------------------------
    def _teach_ranking(self, who: str, incident_id: str, truth: str) -> dict[str, Any]:
        incident = self.store.incident(incident_id)
        assert incident is not None  # _locate checked
        if truth not in {rc["service"] for rc in incident["root_causes"]} | set(incident["services"]):
            raise InvalidRequest(f"{truth} is not among the services of incident {incident_id}")
        labelled = self._labelled_incidents()
        new = weights.learn(self.weights, incident, truth)
        info = save_json_model(self.models_dir, "ranking", {
            "weights": new,
            "change": {"kind": "root_cause", "incident": incident_id, "root_cause": truth, "who": who,
                       "ac1_before": weights.accuracy(labelled, self.weights),
                       "ac1_after": weights.accuracy(labelled, new), "confirmed_incidents": len(labelled)},
        })  # fmt: skip
        self._set_weights(new)
        return {"status": "live", "version": info.version, **info.meta["change"]}

    def _labelled_incidents(self) -> list[tuple[dict[str, Any], str]]:
        rows = self.store.query("SELECT incident_id, root_cause FROM feedback WHERE root_cause IS NOT NULL ORDER BY seq")
        latest = {i: rc for i, rc in rows}  # the latest verdict per incident counts
        return [(inc, rc) for i, rc in latest.items() if (inc := self.store.incident(i)) is not None]

    def _set_weights(self, new: dict[str, float]) -> None:
        self.weights = new

        def install(p: Pipeline) -> None:
            p.incidents.evidence_weights = dict(new)

        self.run_in_pipeline(install)

    def _latest_weights(self) -> dict[str, float]:
        known = versions(self.models_dir, "ranking")
        if not known:
            return {}
        meta = json.loads((self.models_dir / "ranking" / f"v{known[-1]}.json").read_text())
        return {str(k): float(v) for k, v in meta.get("weights", {}).items()}

    # --- memory --------------------------------------------------------------------------------
    def truth(self, incident_id: str) -> str | None:
        rows = self.store.query("SELECT root_cause FROM feedback WHERE incident_id = ? AND root_cause IS NOT NULL "
                                "ORDER BY seq DESC LIMIT 1", (incident_id,))  # fmt: skip
        return rows[0][0] if rows else None

    def similar(self, incident: dict[str, Any]) -> list[dict[str, Any]]:
        return memory.similar(incident, self.store.incidents("resolved", 1000), self.fixed_by, self.truth)

    # --- versions ------------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        out = []
        for name in ("metrics", "forecast", "ranking"):
            for v in versions(self.models_dir, name):
                meta = json.loads((self.models_dir / name / f"v{v}.json").read_text())
                out.append({"name": name, "version": v, "created_unix": meta.get("created_unix"),
                            "series_count": meta.get("series_count"), "change": meta.get("change")})  # fmt: skip
        return out

    def revert(self, name: str, version: int, who: str) -> dict[str, Any]:
        if version not in versions(self.models_dir, name):
            raise NotFound(f"no version {version} of model {name!r}")
        if name == "metrics":
            load_bank(self.models_dir, name, version)  # readable before touching the live bank
            info = self.run_in_pipeline(lambda p: p.revert_models(self.models_dir, version, who))
        elif name == "ranking":
            meta = json.loads((self.models_dir / name / f"v{version}.json").read_text())
            restored = {str(k): float(v) for k, v in meta.get("weights", {}).items()}
            info = save_json_model(self.models_dir, "ranking", {
                "weights": restored, "change": {"kind": "revert", "to_version": version, "who": who}})  # fmt: skip
            self._set_weights(restored)
        else:
            raise InvalidRequest(f"model {name!r} cannot be reverted: its fits are refitted continually")
        self.store.audit(who, "model.revert", f"{name}/v{version}", new_version=info.version)
        return {"name": name, "reverted_to": version, "new_version": info.version}
