"""The active incident stage dies (SIGKILL) while an approved rollback is running; the standby
takes over and the rollback still runs exactly once.

One ``--role detect`` process and two ``--role incidents`` processes share a data directory on a
real broker. The first incident stage leads: it opens the bad release's incident and proposes the
rollback; an approver approves it over REST; while ``kubectl set image`` (a recording stand-in
that takes 8 s) is in flight, the leader is killed. Claimed, and checked: the standby becomes the
leader (its API answers), the run in flight finishes and is recorded (the supervisor that carries
it outlives the engine), the standby never starts it again (one ``set image``, one ``run`` in the
audit log), and the incident exists once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import fake_kubectl
import pytest
from service_harness import _env, _start, _stop_all

from aiops.sim import FaultSpec, Simulator
from aiops.sim.kafka import produce
from aiops.store.sqlite import Store

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
START = 1_700_000_000 * 10**9


def _get(url: str, token: str | None = None, body: Any = None) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def _until(cond: Any, timeout: float, what: str, procs: list[subprocess.Popen]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = cond()
        except (OSError, urllib.error.URLError, ValueError):
            got = None
        if got:
            return got
        for p in procs:
            assert p.poll() is None, f"a process exited with {p.returncode} while waiting for {what}"
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_leader_killed_mid_run_standby_takes_over_run_happens_once(kafka_broker, unique_topic_prefix, tmp_path):
    prefix, broker = unique_topic_prefix, kafka_broker
    topics = {k: f"{prefix}-{k}" for k in ("metrics", "logs", "spans")}
    broker.create_topics(list(topics.values()), partitions=2)
    broker.create_topics([f"{prefix}-deadletter"], partitions=1)
    # the data ends 5 minutes after the bad release: its incident is still open when approved
    faults = [FaultSpec("cart", "bad_release", 1800.0, 1800.0, 0.3)]
    produce(Simulator(8, 0, START, faults=faults), broker.bootstrap, 2100.0, topics, by_service=True)
    calls = tmp_path / "kubectl.log"
    fake_kubectl.install(tmp_path / "bin")
    data = tmp_path / "data"
    env = _env(broker.bootstrap, prefix, data, AIOPS_KAFKA_TOPICS_METRICS=topics["metrics"], AIOPS_KAFKA_TOPIC_FORMATS="{}",
               AIOPS_KAFKA_TOPIC_ANOMALIES=f"{prefix}-anomalies", AIOPS_KAFKA_TOPIC_TOPOLOGY=f"{prefix}-topology",
               AIOPS_KAFKA_TOPIC_LEADER=f"{prefix}-leader", AIOPS_KAFKA_SESSION_TIMEOUT_MS="3000",
               AIOPS_API_TOKENS="tok-ann:approver:ann", AIOPS_EXECUTOR__PLAYBOOKS_DIR=str(ROOT / "playbooks"),
               AIOPS_EXECUTOR__REQUIRED_APPROVALS="1", FAKE_KUBECTL_LOG=str(calls), FAKE_KUBECTL_SLEEP="8",
               PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")  # fmt: skip
    port_file = data / "api.port"
    leader = _start(env, tmp_path / "incidents-a.log", "incidents")
    procs = [leader]
    try:
        first_port = _until(lambda: port_file.exists() and port_file.read_text(), 60, "the first stage to lead", procs)
        standby = _start(env, tmp_path / "incidents-b.log", "incidents")
        procs += [standby, _start(env, tmp_path / "detect.log", "detect")]
        api = f"http://127.0.0.1:{first_port}"

        def proposal() -> dict | None:
            return next((a for a in _get(f"{api}/approvals") if a["playbook"] == "rollback"), None)

        action = _until(proposal, 180, "the rollback proposal", procs)
        assert _get(f"{api}/approvals/{action['id']}", "tok-ann", {"decision": "approve"})["status"] in ("approved", "running")

        def setting_image() -> bool:
            return calls.exists() and any("set" in json.loads(line) for line in calls.read_text().splitlines())

        _until(setting_image, 60, "kubectl set image to start", procs)
        assert next(a for a in _get(f"{api}/approvals") if a["id"] == action["id"])["status"] == "running"
        leader.send_signal(signal.SIGKILL)
        leader.wait(timeout=10)
        procs.remove(leader)

        def new_leader() -> str | None:
            port = port_file.read_text()
            return port if port != first_port and _get(f"http://127.0.0.1:{port}/healthz") else None

        api = f"http://127.0.0.1:{_until(new_leader, 60, 'the standby to lead', procs)}"

        def settled() -> dict | None:
            found = next(a for a in _get(f"{api}/approvals") if a["id"] == action["id"])
            return found if found["status"] not in ("approved", "running") else None

        done = _until(settled, 90, "the rollback to be settled", procs)
        time.sleep(3)  # a wrongful second run would have started by now
    finally:
        _stop_all(procs)

    assert done["status"] == "succeeded" and done["exit_code"] == 0, done
    argvs = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [a for a in argvs if "set" in a] == [["--namespace", "default", "set", "image", "deployment/cart",
                                                 "cart=registry.local:5000/shop/cart:1.2.5"]], argvs  # fmt: skip
    assert "leadership acquired" in (tmp_path / "incidents-b.log").read_text()
    store = Store(data / "aiops.db")
    try:
        runs = store.query("SELECT who FROM audit WHERE action = 'run' AND target = ?", (action["id"],))
        incidents = [i for i in store.incidents() if "cart" in i["services"] and i["suggested_playbook"] == "rollback"]
    finally:
        store.close()
    assert runs == [("executor",)], "exactly one run, by whichever process carried it"
    assert [i["id"] for i in incidents] == [action["incident_id"]]
