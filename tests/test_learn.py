"""Learning pieces on known cases: the recorder ring, replayed before/after figures, evidence weights, memory."""

from __future__ import annotations

import numpy as np
import pytest

from aiops.detect.bank import BankConfig
from aiops.detect.policy import PolicyTable
from aiops.learn import memory, weights
from aiops.learn.evaluate import figures, replay_alerts
from aiops.learn.recorder import SeriesRecorder
from aiops.store.sqlite import MIGRATIONS, Store

S = 10**9


def test_the_recorder_keeps_the_last_points_of_each_series_in_order():
    rec = SeriesRecorder(points=4)
    for t in range(6):
        rec.record(np.array([0, 2]), np.array([t * S, t * S]), np.array([t, 10 + t], dtype=float))
    ts, x = rec.series(2)
    assert ts.tolist() == [2 * S, 3 * S, 4 * S, 5 * S] and x.tolist() == [12, 13, 14, 15]
    assert rec.series(1)[0].tolist() == [] and rec.series(99)[1].tolist() == []
    assert SeriesRecorder(points=0).series(0)[0].tolist() == []


def test_a_less_sensitive_replay_raises_fewer_alerts_and_the_figures_say_so():
    rng = np.random.default_rng(0)
    x = 10 + rng.normal(0, 0.2, 300)
    x[150:153] += 1.2  # a modest bump, flagged at normal sensitivity
    ts = (1_700_000_000 + 10 * np.arange(300)) * S
    key = "svc/queue.depth"
    table = PolicyTable()
    normal = replay_alerts(key, ts, x, table, BankConfig(), 1.0, 1.0)
    deaf = replay_alerts(key, ts, x, table, BankConfig(), 1.0, 1 / 64)
    assert any(abs(a - ts[150]) <= 30 * S for a in normal) and len(deaf) < len(normal)
    f = figures(normal, true_at=[], false_at=[int(ts[150])])
    assert f.precision == 0.0 and f.recall is None and f.alerts == len(normal)
    g = figures(deaf, true_at=[], false_at=[int(ts[150])])
    assert g.precision is None, "no labelled alert left in the replay"


def rc(service, score, *indicators):
    return {"service": service, "score": score, "reason": "", "indicators": list(indicators)}


def incident(iid, *causes, opened=0):
    return {"id": iid, "root_causes": list(causes), "services": [c["service"] for c in causes],
            "opened_at_unix_nano": opened}  # fmt: skip


def test_a_confirmed_root_cause_reweighs_evidence_kinds_within_bounds():
    inc = incident("a", rc("web", 1.0, "web/http.server.request.duration:p99"),
                   rc("db", 0.8, "web/span.client.duration:p99{peer=db}", "db/process.cpu.utilization"))  # fmt: skip
    assert weights.family("web/span.client.duration:p99{peer=db}") == "span.client.duration"
    w = weights.learn({}, inc, "db")
    assert w == {"span.client.duration": 1.25, "process.cpu.utilization": 1.25, "http.server.request.duration": 0.8}
    assert weights.accuracy([(inc, "db")], {}) == 0.0 and weights.accuracy([(inc, "db")], w) == 1.0
    for _ in range(50):
        w = weights.learn(w, inc, "db")
    assert max(w.values()) == weights.HIGH and min(w.values()) == weights.LOW


def test_memory_finds_the_same_fault_and_prefers_what_fixed_it():
    now = incident("new", rc("cart", 1.0, "cart/http.server.request.count:error_ratio"))
    same = incident("old1", rc("cart", 1.0, "cart/http.server.request.count:error_ratio"), opened=1)
    elsewhere = incident("old2", rc("shipping", 1.0, "shipping/http.server.request.count:error_ratio"), opened=2)
    unrelated = incident("old3", rc("db", 1.0, "db/process.cpu.utilization"), opened=3)
    fixed = {"old1": ["rollback"], "old2": ["scale"]}
    found = memory.similar(now, [same, elsewhere, unrelated], lambda i: fixed.get(i, []), lambda i: None)
    assert [(s["id"], s["similarity"]) for s in found] == [("old1", 1.0), ("old2", 0.5)]
    assert memory.preferred_playbook(found) == ("rollback", "rollback fixed 1 similar incident (old1)")
    assert memory.preferred_playbook([]) is None


def test_each_component_migrates_once_and_a_newer_database_is_refused(tmp_path):
    store = Store(tmp_path / "a.db")
    store.migrate("extra", ["CREATE TABLE extra (x INTEGER)"])
    store.migrate("extra", ["CREATE TABLE extra (x INTEGER)"])  # applied once
    with store.write() as db:
        db.execute("INSERT INTO extra VALUES (1)")
    store.close()
    again = Store(tmp_path / "a.db")
    assert again.query("SELECT component, version FROM schema_versions ORDER BY component") == [
        ("audit", 1), ("core", len(MIGRATIONS)), ("extra", 1)]  # fmt: skip
    with pytest.raises(RuntimeError, match="newer than this code"):
        again.migrate("core", MIGRATIONS[:1])
    with pytest.raises(ZeroDivisionError), again.write() as db:
        db.execute("INSERT INTO extra VALUES (2)")
        raise ZeroDivisionError
    assert again.query("SELECT x FROM extra") == [(1,)], "a failed transaction leaves nothing behind"
