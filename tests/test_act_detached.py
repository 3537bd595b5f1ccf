"""``executor.detached``: runs carried out by a supervisor process that outlives the engine.

Real processes throughout: an engine in a subprocess that is SIGKILLed mid-run, supervisors
started by the executor, and playbook commands that report their parent's pid so a test can kill
the supervisor itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_act import Clock, audit, executor, incident, recording_book, runs, stores  # noqa: F401 (a fixture)

from aiops.act.config import ExecutorConfig
from aiops.act.executor import LEASE_S, Executor
from aiops.act.playbooks import Playbook
from aiops.act.verify import incident_resolved
from aiops.config import load_settings
from aiops.errors import ConfigError
from aiops.store.sqlite import Store

ROOT = Path(__file__).resolve().parents[1]
# Writes its parent's pid (the process running it) to argv[2], sleeps argv[3] s, then appends a line to argv[1].
SLOW = ("import os, sys, time; open(sys.argv[2] + '.tmp', 'w').write(str(os.getppid()));"
        " os.replace(sys.argv[2] + '.tmp', sys.argv[2]); time.sleep(float(sys.argv[3]));"
        " open(sys.argv[1], 'a').write('run' + chr(10)); print('done')")  # fmt: skip
# An engine process: one executor pass over the database, detached, verifying by incident resolution.
ENGINE = """
import sys
from aiops.act.config import ExecutorConfig
from aiops.act.executor import Executor
from aiops.act.playbooks import load_playbooks
from aiops.act.verify import incident_resolved
from aiops.store.sqlite import Store
store = Store(sys.argv[1])
Executor(store, load_playbooks(sys.argv[2]), ExecutorConfig(detached=True), verify=incident_resolved(store)).run_due()
"""


def slow_book(tmp_path: Path, seconds: float, **over: Any) -> Playbook:
    """A playbook whose run takes ``seconds``: ``runner.ppid`` names its runner, ``r.log`` counts finished runs."""
    command = ["{python}", "-c", SLOW, "{log}", str(tmp_path / "runner.ppid"), str(seconds)]
    return recording_book(tmp_path / "books", tmp_path / "r.log", command=command, **over)


def runner_pid(tmp_path: Path, timeout_s: float = 20.0) -> int:
    """Once the command has started: the pid of the process that started it."""
    path, deadline = tmp_path / "runner.ppid", time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.02)
    return int(path.read_text())


def lease_until(store: Store, action_id: str) -> float:
    return float(store.query("SELECT lease_until FROM actions WHERE id = ?", (action_id,))[0][0])


def test_the_engine_dies_mid_run_and_the_standby_does_not_run_it_again(tmp_path: Path, stores) -> None:
    book = slow_book(tmp_path, seconds=4)
    store = stores()
    inc = incident()
    store.commit([inc], [])
    ex = executor(store, [book], Clock(time.time()))
    a = ex.propose(inc)
    ex.decide(a.id, "alice", "approver", True)
    with subprocess.Popen([sys.executable, "-c", ENGINE, str(store.path), str(book.path.parent)], cwd=ROOT) as engine:
        supervisor = runner_pid(tmp_path)
        engine.send_signal(signal.SIGKILL)
        assert engine.wait(timeout=10) == -signal.SIGKILL
    assert supervisor != engine.pid
    os.kill(supervisor, 0)  # alive: the engine's death did not take it along
    before = lease_until(store, a.id)
    time.sleep(1.5)
    assert lease_until(store, a.id) > before, "the supervisor renews the lease after the engine died"

    standby_store = stores()
    seen: list[tuple[str, str]] = []
    standby = Executor(standby_store, [book], ExecutorConfig(detached=True), verify=incident_resolved(standby_store),
                       on_change=lambda x: seen.append((x.status, x.verification)))  # fmt: skip
    standby.recover()
    deadline = time.monotonic() + 20
    while standby.action(a.id).status == "running":
        assert time.monotonic() < deadline, "the supervisor never settled the action"
        standby.run_due()
        time.sleep(0.1)
    done = standby.action(a.id)
    assert runs(tmp_path / "r.log") == ["run"]
    assert (done.status, done.exit_code, done.stdout, done.attempts, done.verification) == (
        "succeeded", 0, "done\n", 1, "pending")  # fmt: skip
    assert seen == [], "the standby neither started nor re-ran it"
    assert [r[1:] for r in audit(store, a.id)] == [("propose", True), ("approve", True), ("run", True)]
    assert store.audit_log(a.id)[0]["detail"]["stdout"] == "done\n"

    store.commit([inc.model_copy(update={"status": "resolved", "updated_at_unix_nano": 3})], [])
    standby.run_due()
    assert standby.action(a.id).verification == "passed" and seen == [("succeeded", "passed")]
    assert audit(store, a.id)[-1] == ("executor", "verify", True) and runs(tmp_path / "r.log") == ["run"]


@pytest.mark.parametrize("dry_run", [False, True])
def test_detached_settles_as_in_process(tmp_path: Path, stores, dry_run: bool) -> None:
    log = tmp_path / "r.log"
    book = recording_book(tmp_path / "books", log)
    t0 = time.time()
    results = []
    for detached in (False, True):
        log.unlink(missing_ok=True)
        store, clock = stores(f"detached-{detached}.db"), Clock(t0)
        seen: list[tuple[str, str]] = []
        ex = executor(store, [book], clock, detached=detached, dry_run=dry_run, verify=lambda a: False,
                      on_change=lambda a: seen.append((a.status, a.verification)))  # fmt: skip
        a = ex.propose(incident())
        ex.decide(a.id, "alice", "approver", True)
        ex.run_due()
        clock.t = time.time() + 61  # past the deadline of either run's finish: verification fails, revert runs
        ex.run_due()
        ex.run_due()
        trail = [(r["who"], r["action"], r["ok"], r["detail"]) for r in reversed(store.audit_log(a.id))]
        results.append((runs(log), seen, ex.action(a.id).model_dump(exclude={"started_at", "finished_at"}), trail))
    assert results[1] == results[0]
    if dry_run:
        assert results[0][0] == [] and results[0][2]["status"] == "succeeded"
    else:
        assert results[0][0] == ["run cart 3 low", "revert cart"] and results[0][2]["status"] == "reverted"


@pytest.mark.parametrize("idempotent", [True, False])
def test_the_supervisor_dies_mid_run_and_its_lease_decides(tmp_path: Path, stores, idempotent: bool) -> None:
    book = slow_book(tmp_path, seconds=3, idempotent=idempotent)
    store, clock = stores(), Clock(time.time())
    ex = executor(store, [book], clock, detached=True)
    a = ex.propose(incident())
    ex.decide(a.id, "alice", "approver", True)
    engine = threading.Thread(target=ex.run_due)
    engine.start()
    os.kill(runner_pid(tmp_path), signal.SIGKILL)
    engine.join(timeout=30)
    assert not engine.is_alive() and ex.action(a.id).status == "running"
    ex.run_due()  # the lease has not lapsed yet: the supervisor might be alive somewhere
    assert ex.action(a.id).status == "running"
    deadline = time.monotonic() + 20
    while runs(tmp_path / "r.log") == []:  # the command, in its own session, outlived its supervisor
        assert time.monotonic() < deadline
        time.sleep(0.05)
    clock.t = time.time() + LEASE_S + 1
    ex.run_due()
    done = ex.action(a.id)
    trail = [r[1:] for r in audit(store, a.id)]
    if idempotent:
        assert (done.status, done.attempts, done.exit_code) == ("succeeded", 2, 0)
        assert runs(tmp_path / "r.log") == ["run", "run"]  # today's rule for idempotent playbooks: run again
        assert trail[2:] == [("recover", True), ("run", True)]
    else:
        assert done.status == "interrupted" and runs(tmp_path / "r.log") == ["run"]
        assert trail[2:] == [("recover", False)]


def test_detached_needs_playbook_files_and_is_set_from_the_environment(stores, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="loaded from files; not so: inline"):
        executor(stores(), [Playbook(name="inline", command=["true"])], detached=True)
    assert load_settings().executor.detached is False
    monkeypatch.setenv("AIOPS_EXECUTOR__DETACHED", "true")
    assert load_settings().executor.detached is True
