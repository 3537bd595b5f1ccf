"""The REST API on a real store and a real pipeline: reads, roles, audit, feedback learning, versions, Slack signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from aiops.api.app import ApiContext, create_app
from aiops.api.auth import TokenTable
from aiops.detect.models import versions
from aiops.ingest.deadletter import MemoryDeadLetter
from aiops.learn.config import LearnConfig
from aiops.learn.learner import Learner
from aiops.pipeline import Pipeline
from aiops.sim import default_scenario
from aiops.sim.source import SimulatorSource
from aiops.store.sqlite import Store

TOKENS = {"tv": "viewer:val", "te": "expert:eve", "ta": "approver:ann"}
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A pipeline that watched the default scenario's first fault, its outputs in SQLite."""
    root = tmp_path_factory.mktemp("api")
    sim = default_scenario()
    incidents, anomalies = [], []
    pipeline = Pipeline(MemoryDeadLetter(), incidents.append, anomalies.append, now_ns=lambda: sim.now_unix_nano)
    for batch in SimulatorSource(sim, sim.steps_for(2400 + 480)).batches():
        pipeline.process(batch)
    store = Store(root / "aiops.db")
    store.commit(incidents, anomalies)
    return root, store, pipeline, incidents, anomalies


@pytest.fixture
def api(engine, tmp_path):
    root, store, pipeline, incidents, anomalies = engine
    models = tmp_path / "models"
    learner = Learner(store, models, lambda fn: fn(pipeline), LearnConfig(min_feedback=0.3))
    clock = [time.time()]
    ctx = ApiContext(store, TokenTable(TOKENS), SECRET, {"UAPPROVER": "approver"}, learner=learner,
                     snapshot=lambda: {"points": pipeline.stats.points, "bad_records|reason=json": 2},
                     health=lambda: {"pipeline": {"ok": True}}, clock=lambda: clock[0])  # fmt: skip
    return TestClient(create_app(ctx)), store, pipeline, incidents, models


def test_reads_are_open_and_follow_the_contract(api):
    client, store, _, incidents, _ = api
    got = client.get("/incidents").json()
    assert [i["id"] for i in got] == [i["id"] for i in store.incidents()]
    assert got and set(got[0]) >= {"id", "root_causes", "anomalies", "kind", "forecast"}
    one = client.get(f"/incidents/{got[0]['id']}").json()
    assert one["id"] == got[0]["id"] and one["actions"] == [] and isinstance(one["similar"], list)
    assert client.get("/incidents/nope").status_code == 404
    assert client.get("/incidents", params={"status": "sideways"}).status_code == 422
    service = got[0]["services"][0]
    assert all(a["service"] == service for a in client.get("/anomalies", params={"service": service}).json())
    assert client.get("/anomalies", params={"service": "a b;c"}).status_code == 422


def test_writes_need_a_token_with_the_right_role_and_refusals_are_audited(api):
    client, store, _, incidents, _ = api
    body = {"target": "incident", "id": incidents[0].id, "verdict": "true_positive"}
    r = client.post("/feedback", json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and r.json()["error"] == "missing bearer token"
    assert client.post("/feedback", json=body, headers=auth("forged")).status_code == 401
    r = client.post("/feedback", json=body, headers=auth("tv"))
    assert r.status_code == 403 and "needs expert" in r.json()["error"]
    log = store.audit_log()
    assert [e["action"] for e in log[:3]] == ["auth.forbidden", "auth.refused", "auth.refused"]
    assert log[0]["who"] == "val" and not log[0]["ok"]
    r = client.post("/feedback", json={**body, "verdict": "maybe"}, headers=auth("te"))
    assert r.status_code == 422 and "verdict" in r.json()["error"]
    r = client.post("/feedback", json={"target": "incident", "id": incidents[0].id}, headers=auth("te"))
    assert r.status_code == 422 and "give a verdict" in r.json()["error"]
    r = client.post("/feedback", json=body, headers=auth("te"))
    assert r.status_code == 201 and r.json()["incident_id"] == incidents[0].id
    assert store.audit_log()[0]["action"] == "feedback" and store.audit_log()[0]["who"] == "eve"


def test_a_false_positive_retunes_its_series_with_before_after_figures(api):
    client, store, pipeline, incidents, models = api
    a = incidents[0].anomalies[0]
    sid = pipeline.series.index[a.series]
    fb_before = float(pipeline.bank.arrays["fb"][sid])
    body = {"target": "anomaly", "id": f"{a.series}@{a.first_seen_unix_nano}", "verdict": "false_positive"}
    r = client.post("/feedback", json=body, headers=auth("te"))
    assert r.status_code == 201, r.text
    retune = r.json()["effect"]["retune"]
    assert retune["status"] == "live" and retune["feedback_after"] == pytest.approx(fb_before / 2)
    assert float(pipeline.bank.arrays["fb"][sid]) == pytest.approx(fb_before / 2)
    assert retune["replayed_points"] > 0 and retune["before"]["alerts"] >= retune["after"]["alerts"]
    assert retune["before"]["precision"] is not None, "the labelled false alert is in the replay"
    (version,) = versions(models, "metrics")
    meta = json.loads((models / "metrics" / f"v{version}.json").read_text())
    assert meta["change"]["series"] == a.series and meta["change"]["who"] == "eve"
    listed = client.get("/models").json()
    assert listed[0]["name"] == "metrics" and listed[0]["change"]["kind"] == "retune"
    # A second verdict would take the series below 30 % of its sensitivity: an approver signs off.
    r = client.post("/feedback", json=body, headers=auth("te"))
    held = r.json()["effect"]["retune"]
    assert held["status"] == "needs_approval" and float(pipeline.bank.arrays["fb"][sid]) == pytest.approx(fb_before / 2)
    pending = client.get("/approvals").json()
    assert [p["id"] for p in pending] == [held["approval_id"]] and pending[0]["type"] == "model_change"
    r = client.post(f"/approvals/{held['approval_id']}", json={"decision": "approve"}, headers=auth("te"))
    assert r.status_code == 403
    r = client.post(f"/approvals/{held['approval_id']}", json={"decision": "approve"}, headers=auth("ta"))
    assert r.status_code == 200 and r.json()["status"] == "live" and r.json()["approved_by"] == "ann"
    assert float(pipeline.bank.arrays["fb"][sid]) == pytest.approx(fb_before / 4)
    assert client.post(f"/approvals/{held['approval_id']}", json={"decision": "reject"}, headers=auth("ta")).status_code == 409
    # Revert to the first version: the series' sensitivity comes back, as a new version.
    assert client.post("/models/metrics/revert", json={"version": 1}, headers=auth("te")).status_code == 403
    assert client.post("/models/metrics/revert", json={"version": 99}, headers=auth("ta")).status_code == 404
    r = client.post("/models/metrics/revert", json={"version": 1}, headers=auth("ta"))
    assert r.status_code == 200 and r.json() == {"name": "metrics", "reverted_to": 1, "new_version": 3}
    assert float(pipeline.bank.arrays["fb"][sid]) == pytest.approx(fb_before / 2)
    pipeline.bank.arrays["fb"][sid] = fb_before  # the module's pipeline is shared


def test_a_confirmed_root_cause_teaches_the_ranking(api):
    client, store, pipeline, incidents, models = api
    inc = next(i for i in incidents if len(i.root_causes) > 1)
    second = inc.root_causes[1].service
    r = client.post("/feedback", json={"target": "incident", "id": inc.id, "root_cause": second}, headers=auth("te"))
    ranking = r.json()["effect"]["ranking"]
    assert ranking["status"] == "live" and ranking["confirmed_incidents"] >= 1
    assert ranking["ac1_before"] <= ranking["ac1_after"]
    assert pipeline.incidents.evidence_weights, "the live ranking got the weights"
    assert versions(models, "ranking") == [1]
    r = client.post("/feedback", json={"target": "incident", "id": inc.id, "root_cause": "elsewhere"}, headers=auth("te"))
    assert r.status_code == 422 and "not among the services" in r.json()["error"]
    assert client.post("/models/ranking/revert", json={"version": 1}, headers=auth("ta")).json()["new_version"] == 2
    assert client.post("/models/forecast/revert", json={"version": 1}, headers=auth("ta")).status_code == 404
    pipeline.incidents.evidence_weights = {}


def signed(body: str, ts: int, secret: str = SECRET) -> dict[str, str]:
    base = f"v0:{ts}:{body}".encode()
    sig = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sig,
            "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip


def test_slack_requests_must_be_signed_and_fresh(api):
    client, store, *_ = api
    body = urlencode({"payload": json.dumps({"type": "block_actions", "user": {"id": "UAPPROVER"},
                                             "actions": [{"action_id": "approve", "value": "act-1"}]})})  # fmt: skip
    now = int(time.time())
    cases = {
        "bad Slack signature": signed(body, now, secret="not-the-secret"),
        "stale Slack request timestamp (replay window is 5 minutes)": signed(body, now - 301),
        "missing Slack signature headers": {"Content-Type": "application/x-www-form-urlencoded"},
    }
    for reason, headers in cases.items():
        r = client.post("/slack/actions", content=body, headers=headers)
        assert r.status_code == 401 and r.json()["error"] == reason
        assert store.audit_log()[0]["action"] == "slack.refused" and store.audit_log()[0]["detail"]["reason"] == reason
    r = client.post("/slack/actions", content=body, headers=signed(body, now))
    assert r.status_code == 503, "signed correctly, but no executor in this engine"
    metrics = client.get("/metrics").text
    assert 'aiops_slack_bad_signatures_total{reason="bad Slack signature"} 1.0' in metrics


def test_metrics_and_health(api):
    client, *_ = api
    client.get("/incidents")
    text = client.get("/metrics").text
    assert "aiops_points " in text and 'aiops_bad_records{reason="json"} 2.0' in text
    assert 'aiops_api_requests_total{method="GET",route="/incidents",status="200"}' in text
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
