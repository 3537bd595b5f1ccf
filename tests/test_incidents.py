"""Anomaly episodes → incidents: grouping, ids, resolution, root-cause order, rollback, contract."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pydantic
import pytest
from contract import CONTRACT_KEYS

from aiops.correlate.changes import ChangeIndex
from aiops.correlate.contract import Incident
from aiops.correlate.incidents import IncidentManager
from aiops.detect.episodes import Activity, Anomaly
from aiops.ingest.records import ChangeEvent
from aiops.rca.rank import RankConfig

S = 10**9
MIN = 60 * S
T = 1_700_000_000 * S
KEYS = ["db/query.duration:p99", "api/http.duration:p99", "web/http.duration:p99", "db/cpu", "api/errors"]


def anomaly(k, ts, score=0.9):
    return Anomaly(KEYS[k], KEYS[k].split("/")[0], ts, score, 1, 1.0)


def activity(*opened, active=()):
    return Activity(list(opened), np.array([k for k, _ in active], dtype=np.int64),
                    np.array([t for _, t in active], dtype=np.int64), np.full(len(active), 0.9))  # fmt: skip


def manager(*changes, **kw):
    idx = ChangeIndex()
    idx.add(list(changes))
    return IncidentManager(idx, **kw)


def deploy(service, ts, version="v2", kind="deployment"):
    return ChangeEvent(ts, service, kind, version, {})


def test_grouping_and_root_cause_is_earliest_onset():
    m = manager()
    (first,) = m.on_activity(activity(anomaly(0, T)), KEYS)
    assert first.status == "open" and first.services == ["db"] and first.opened_at_unix_nano == T
    (second,) = m.on_activity(activity(anomaly(1, T + MIN)), KEYS)
    assert second.id == first.id
    assert second.services == ["api", "db"]
    assert [rc.service for rc in second.root_causes] == ["db", "api"]
    assert second.root_causes[0].score == 1.0 and 0 < second.root_causes[1].score < 1
    assert "first anomaly" in second.root_causes[0].reason
    assert "+60 s after the first" in second.root_causes[1].reason
    assert second.root_causes[0].indicators == [KEYS[0]]
    assert [a.series for a in second.anomalies] == [KEYS[0], KEYS[1]]
    assert second.anomalies[1].first_seen_unix_nano == T + MIN
    assert second.updated_at_unix_nano == T + MIN


def test_earliest_wins_even_when_later_is_stronger():
    m = manager()
    out = m.on_activity(activity(anomaly(1, T + 30 * S, score=0.999), anomaly(0, T, score=0.6)), KEYS)
    assert out[-1].root_causes[0].service == "db"


def test_far_apart_anomalies_open_separate_incidents():
    m = manager(group_window_s=300)
    (a,) = m.on_activity(activity(anomaly(0, T)), KEYS)
    (b,) = m.on_activity(activity(anomaly(1, T + 301 * S)), KEYS)
    assert a.id != b.id and b.services == ["api"] and len(m.open) == 2


def test_ongoing_activity_extends_the_grouping_window():
    m = manager(group_window_s=300)
    (a,) = m.on_activity(activity(anomaly(0, T)), KEYS)
    m.on_activity(activity(active=[(0, T + 250 * S)]), KEYS)
    (b,) = m.on_activity(activity(anomaly(1, T + 500 * S)), KEYS)
    assert b.id == a.id and b.services == ["api", "db"]


def test_ids_are_deterministic():
    def run():
        m = manager()
        out = m.on_activity(activity(anomaly(0, T)), KEYS) + m.on_activity(activity(anomaly(1, T + MIN)), KEYS)
        out += m.on_activity(activity(anomaly(2, T + 90 * MIN)), KEYS)
        return [i.model_dump() for i in out]

    first, again = run(), run()
    assert first == again
    assert first[0]["id"] == hashlib.sha1(f"{KEYS[0]}@{T}".encode()).hexdigest()[:16]
    assert first[-1]["id"] == hashlib.sha1(f"{KEYS[2]}@{T + 90 * MIN}".encode()).hexdigest()[:16]


def test_replayed_anomaly_is_not_counted_twice():
    m = manager()
    m.on_activity(activity(anomaly(0, T)), KEYS)
    assert m.on_activity(activity(anomaly(0, T)), KEYS) == []
    (inc,) = m.open.values()
    assert len(inc.anomalies) == 1


def test_resolution_after_quiet_period():
    m = manager(resolve_after_s=600)
    m.on_activity(activity(anomaly(0, T)), KEYS)
    m.on_activity(activity(active=[(0, T + 2 * MIN)]), KEYS)
    assert m.tick(T + 2 * MIN + 599 * S) == []
    (done,) = m.tick(T + 2 * MIN + 600 * S)
    assert done.status == "resolved" and done.updated_at_unix_nano == T + 12 * MIN
    assert m.open == {} and m.tick(T + 100 * MIN) == []
    (again,) = m.on_activity(activity(anomaly(0, T + 30 * MIN)), KEYS)
    assert again.id != done.id and again.status == "open"


def test_deployment_shortly_before_onset_suggests_rollback():
    m = manager(deploy("db", T - 5 * MIN, "db-2.3.1"), rank_config=RankConfig(rollback_window_s=900))
    (inc,) = m.on_activity(activity(anomaly(0, T)), KEYS)
    assert inc.suggested_playbook == "rollback"
    assert inc.root_causes[0].service == "db"
    assert "deployed db-2.3.1 5.0 min before onset" in inc.root_causes[0].reason
    assert [(c.service, c.version, c.at_unix_nano) for c in inc.changes] == [("db", "db-2.3.1", T - 5 * MIN)]


@pytest.mark.parametrize(
    "change",
    [
        deploy("db", T - 20 * MIN),  # too long before for a rollback, still listed
        deploy("db", T - 5 * MIN, kind="config_change"),
        deploy("web", T - 5 * MIN),  # another service, not in the incident
    ],
)
def test_no_rollback_without_a_recent_deploy_of_the_cause(change):
    m = manager(change)
    (inc,) = m.on_activity(activity(anomaly(0, T)), KEYS)
    assert inc.suggested_playbook is None
    assert "deployed" not in inc.root_causes[0].reason
    assert [c.service for c in inc.changes] == ([] if change.service == "web" else ["db"])


def test_deploy_boosts_a_later_candidate():
    m = manager(deploy("api", T))
    out = m.on_activity(activity(anomaly(0, T), anomaly(1, T + 10 * S)), KEYS)
    top = out[-1].root_causes[0]
    assert top.service == "api" and "deployed v2" in top.reason
    assert out[-1].suggested_playbook == "rollback"


def test_severity():
    m = manager()
    (one,) = m.on_activity(activity(anomaly(0, T)), KEYS)
    assert one.severity == "info"
    (two,) = m.on_activity(activity(anomaly(3, T + S)), KEYS)
    assert two.severity == "warning" and two.services == ["db"]
    (three,) = m.on_activity(activity(anomaly(1, T + 2 * S), anomaly(2, T + 3 * S)), KEYS)
    assert three.severity == "critical"


def test_incident_matches_the_contract():
    m = manager(deploy("db", T - MIN))
    out = m.on_activity(activity(anomaly(0, T), anomaly(1, T + S)), KEYS)
    out += m.tick(T + 60 * MIN)
    assert [i.status for i in out] == ["open", "resolved"]
    for inc in out:
        doc = json.loads(inc.model_dump_json())
        assert set(doc) == CONTRACT_KEYS
        assert Incident.model_validate(doc) == inc
        assert all(set(rc) == {"service", "score", "reason", "indicators"} for rc in doc["root_causes"])
        assert all(set(a) == {"series", "service", "first_seen_unix_nano", "score"} for a in doc["anomalies"])
        assert all(set(c) == {"service", "version", "at_unix_nano"} for c in doc["changes"])
        assert doc["kind"] == "detected"
    with pytest.raises(pydantic.ValidationError):
        Incident.model_validate({**json.loads(out[0].model_dump_json()), "extra": 1})
    with pytest.raises(pydantic.ValidationError):
        Incident.model_validate({**json.loads(out[0].model_dump_json()), "status": "closed"})


def test_state_round_trip():
    a = manager(deploy("db", T - MIN))
    a.on_activity(activity(anomaly(0, T)), KEYS)
    b = manager(deploy("db", T - MIN))
    b.load_state(json.loads(json.dumps(a.state())))
    step = activity(anomaly(1, T + MIN), active=[(0, T + 2 * MIN)])
    assert [i.model_dump() for i in b.on_activity(step, KEYS)] == [i.model_dump() for i in a.on_activity(step, KEYS)]
    assert [i.model_dump() for i in b.tick(T + 40 * MIN)] == [i.model_dump() for i in a.tick(T + 40 * MIN)]


def test_state_keeps_the_value_before_each_anomaly_and_reads_rows_saved_without_it():
    a = manager()
    a.on_activity(activity(Anomaly(KEYS[0], "db", T, 0.9, 1, 3.0, 1.0, 2.5)), KEYS)
    state = json.loads(json.dumps(a.state()))
    b = manager()
    b.load_state(state)
    assert [x.previous for inc in b.open.values() for x in inc.anomalies.values()] == [2.5]
    for inc in state["open"]:
        inc["anomalies"] = [row[:7] for row in inc["anomalies"]]
    old = manager()
    old.load_state(state)
    assert all(math.isnan(x.previous) for inc in old.open.values() for x in inc.anomalies.values())


def test_change_index_dedups_and_prunes():
    idx = ChangeIndex(retention_s=3600)
    idx.add([deploy("db", T), deploy("db", T), deploy("db", T - 10 * MIN, "v1")])
    assert [c.version for c in idx.between("db", 0, T)] == ["v1", "v2"]
    idx.prune(T - 10 * MIN + 3600 * S + 1)
    assert [c.version for c in idx.between("db", 0, T)] == ["v2"]
    again = ChangeIndex()
    again.load_state(json.loads(json.dumps(idx.state())))
    assert [c.version for c in again.between("db", 0, T)] == ["v2"]
