"""The closed loop with real parts: telemetry through a real Kafka broker into ``aiops run``, a
Slack message to a webhook stand-in on 127.0.0.1, a rollback that needs two approvers approved
once through REST and once through a signed Slack action (each clicked twice), the playbook run
exactly once (against a recording ``kubectl``), the audit trail, and the Slack message updated
with the outcome."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import fake_kubectl
import pytest
from slack_server import SlackServer

from aiops.sim import FaultSpec, Simulator
from aiops.sim.kafka import produce

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[1]
SECRET = "e2e-signing-secret-0123456789abcdef"
START = 1_700_000_000 * 10**9


def _http(method: str, url: str, body: Any = None, token: str | None = None,
          headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:  # fmt: skip
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        with e:  # an error response holds its connection until closed
            return e.code, json.loads(e.read() or b"null")


def _wait(cond: Any, timeout: float, what: str, proc: subprocess.Popen) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        assert proc.poll() is None, f"aiops run exited with {proc.returncode} while waiting for {what}"
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _buttons(slack: SlackServer) -> dict[str, str]:
    """Action id -> the service named in the message that carries its Approve button."""
    found = {}
    for r in list(slack.requests):
        for block in r.body.get("blocks", []):
            for el in block.get("elements", []) if block.get("type") == "actions" else []:
                if el.get("action_id") == "approve":
                    text = json.dumps(r.body)
                    service = re.search(r"\b(cart|catalog)\b", text)
                    found[el["value"]] = service.group(1) if service else "?"
    return found


def _signed(body: str, ts: int, secret: str = SECRET) -> dict[str, str]:
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sig,
            "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip


def test_telemetry_to_slack_to_approval_to_exactly_one_run(kafka_broker, unique_topic_prefix, tmp_path):
    topics = {k: f"{unique_topic_prefix}-{k}" for k in ("metrics", "logs", "spans")}
    kafka_broker.create_topics(topics.values())
    # the data ends 5 minutes after the bad release: its incident cannot have resolved (that takes
    # 5 quiet minutes of event time), so it is still open, its proposal standing, when approved
    faults = [FaultSpec("cart", "bad_release", 1800.0, 1800.0, 0.3)]
    produce(Simulator(8, 0, START, faults=faults), kafka_broker.bootstrap, 2100.0, topics)
    slack = SlackServer().start()
    calls = tmp_path / "kubectl.log"
    fake_kubectl.install(tmp_path / "bin")
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    env |= {
        "AIOPS_KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "AIOPS_KAFKA_GROUP": f"{unique_topic_prefix}-g",
        "AIOPS_KAFKA_TOPICS_METRICS": topics["metrics"], "AIOPS_KAFKA_TOPICS_LOGS": topics["logs"],
        "AIOPS_KAFKA_TOPICS_SPANS": topics["spans"], "AIOPS_KAFKA_FORMAT": "otlp_json",
        "AIOPS_DATA_DIR": str(data), "AIOPS_PORT": "0", "AIOPS_CHECKPOINT_INTERVAL_S": "1",
        "AIOPS_SLACK_WEBHOOK_URL": f"{slack.url}/webhook", "AIOPS_SLACK_SIGNING_SECRET": SECRET,
        "AIOPS_API_TOKENS": "tok-ann:approver:ann,tok-eve:expert:eve", "AIOPS_SLACK_USERS": '{"U42": "approver"}',
        "AIOPS_EXECUTOR__PLAYBOOKS_DIR": str(ROOT / "playbooks"), "AIOPS_EXECUTOR__REQUIRED_APPROVALS": "2",
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", "FAKE_KUBECTL_LOG": str(calls),
    }  # fmt: skip
    log = (tmp_path / "service.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "aiops", "-v", "run"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        port = _wait(lambda: (data / "api.port").exists() and (data / "api.port").read_text(), 60, "the API", proc)
        api = f"http://127.0.0.1:{port}"
        buttons = _wait(lambda: _buttons(slack), 120, "a Slack message with Approve buttons", proc)
        ((action_id, service),) = buttons.items()
        assert service == "cart"

        # --- REST: refusals first, each audited; then ann's approval, clicked twice ----------
        assert _http("POST", f"{api}/approvals/{action_id}", {"decision": "approve"})[0] == 401
        assert _http("POST", f"{api}/approvals/{action_id}", {"decision": "approve"}, "tok-eve")[0] == 403
        code, err = _http("POST", f"{api}/approvals/{action_id}",
                          {"decision": "approve", "params": {"namespace": "default; rm -rf /"}}, "tok-ann")  # fmt: skip
        assert code == 422 and "namespace" in err["error"], err
        for _ in range(2):
            code, action = _http("POST", f"{api}/approvals/{action_id}", {"decision": "approve"}, "tok-ann")
            assert code == 200 and action["playbook"] == "rollback" and action["status"] == "proposed", action
        assert len(action["decisions"]) == 1 and not calls.exists(), "one approver of two: nothing runs"

        # --- Slack: a stale and a forged request are refused, then sam's signed click (twice) -
        payload = {"type": "block_actions", "user": {"id": "U42", "username": "sam"},
                   "actions": [{"action_id": "approve", "value": action_id}], "response_url": f"{slack.url}/response/1"}
        body = urlencode({"payload": json.dumps(payload)})
        now = int(time.time())
        assert _http("POST", f"{api}/slack/actions", raw=body.encode(), headers=_signed(body, now - 400))[0] == 401
        assert _http("POST", f"{api}/slack/actions", raw=body.encode(), headers=_signed(body, now, "forged"))[0] == 401
        code, reply = _http("POST", f"{api}/slack/actions", raw=body.encode(), headers=_signed(body, int(time.time())))
        assert code == 200 and "cart" in reply["text"], reply
        code, reply = _http("POST", f"{api}/slack/actions", raw=body.encode(), headers=_signed(body, int(time.time())))
        assert code == 200, reply  # a double click: the same approval again, or "already running/done"

        # --- the rollback ran once -----------------------------------------------------------
        def finished() -> dict[str, Any] | None:
            _, actions = _http("GET", f"{api}/approvals")
            return next((a for a in actions if a.get("id") == action_id and a["status"] == "succeeded"), None)

        done = _wait(finished, 120, "the rollback to finish", proc)
        assert [d["who"] for d in done["decisions"]] == ["ann", "slack:sam"]
        argvs = [json.loads(line) for line in calls.read_text().splitlines()]
        assert [a for a in argvs if "set" in a] == [["--namespace", "default", "set", "image", "deployment/cart",
                                                     "cart=registry.local:5000/shop/cart:1.2.5"]], argvs  # fmt: skip
        assert done["exit_code"] == 0 and "+ kubectl" in done["stdout"]

        # --- the audit trail holds who did what, the refusals and the runs -------------------
        code, audit = _http("GET", f"{api}/audit?limit=500", token="tok-eve")
        actions = [(e["action"], e["target"], e["who"], e["ok"]) for e in audit]
        assert ("approve", action_id, "eve", False) in actions, "an expert may not approve a rollback"
        assert any(a == "auth.refused" for a, *_ in actions), "the request without a token"
        assert any(a == "slack.refused" for a, *_ in actions)
        runs = [e for e in audit if e["target"] == action_id]
        assert any(e["action"] == "approve" and not e["ok"] and "namespace" in e["detail"]["reason"] for e in runs)
        assert [e["who"] for e in runs if e["action"] == "run"] == ["executor"], "exactly one run"

        # --- Slack heard about it: the signed click's message edited in place ----------------
        def edited() -> bool:
            return any(r.path == "/response/1" and r.body.get("replace_original") for r in slack.requests)

        _wait(edited, 60, "the approved message to be edited through its response_url", proc)
        assert not [r for r in slack.requests if r.path == "/webhook" and r.body.get("text") is None]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        slack.stop()
