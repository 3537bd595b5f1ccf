"""Playbooks and the executor, against real subprocesses, SQLite files and the simulator's control API."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import fake_kubectl
import pytest
import yaml

from aiops.act.config import ExecutorConfig
from aiops.act.executor import LEASE_S, Executor
from aiops.act.model import Action
from aiops.act.params import render, validate
from aiops.act.playbooks import Playbook, load_playbooks
from aiops.act.verify import incident_resolved
from aiops.correlate.changes import ChangeIndex
from aiops.correlate.contract import AnomalyRef, ChangeRef, Incident, RootCause
from aiops.errors import ConfigError, Conflict, Forbidden, InvalidRequest, NotFound
from aiops.ingest.records import ChangeEvent
from aiops.sim import FaultSpec, Simulator
from aiops.sim.control import ControlServer
from aiops.store.sqlite import Store

SHIPPED = Path(__file__).resolve().parents[1] / "playbooks"
# Appends "<argv...>" to the file named by its first argument: how tests count real runs.
RECORD = "import sys; open(sys.argv[1], 'a').write(' '.join(sys.argv[2:]) + chr(10))"


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def incident(id: str = "inc-1", service: str = "cart", suggested: str | None = "scale-out",
             changes: list[tuple[str, str]] = (), series: str = "cart/process.cpu.utilization") -> Incident:  # fmt: skip
    return Incident(
        id=id, opened_at_unix_nano=1, updated_at_unix_nano=2, status="open", kind="detected", severity="warning",
        services=[service], root_causes=[RootCause(service=service, score=1.0, reason="test", indicators=[])],
        anomalies=[AnomalyRef(series=series, service=service, first_seen_unix_nano=1, score=0.9)],
        changes=[ChangeRef(service=s, version=v, at_unix_nano=1 + i) for i, (s, v) in enumerate(changes)],
        suggested_playbook=suggested,
    )  # fmt: skip


def write_book(folder: Path, **fields: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{fields['name']}.yaml"
    path.write_text(yaml.safe_dump(fields))
    return path


def recording_book(folder: Path, log: Path, **over: Any) -> Playbook:
    """A playbook whose command appends its arguments to ``log``: one line per real run."""
    fields: dict[str, Any] = {
        "name": "touch",
        "applies": {"suggested": ["scale-out"], "kinds": ["saturation"]},
        "parameters": {
            "service": {"type": "str", "from": "incident.root_cause"},
            "replicas": {"type": "int", "min": 1, "max": 50, "default": 3},
            "level": {"type": "enum", "choices": ["low", "high"], "default": "low"},
            "log": {"type": "str", "default": str(log)},
        },
        "command": ["{python}", "-c", RECORD, "{log}", "run", "{service}", "{replicas}", "{level}"],
        "revert": ["{python}", "-c", RECORD, "{log}", "revert", "{service}"],
        "idempotent": True,
        "timeout_s": 20,
        "verify": {"within_s": 60},
        **over,
    }
    write_book(folder, **fields)
    return next(b for b in load_playbooks(folder) if b.name == fields["name"])


@pytest.fixture
def stores(tmp_path: Path):
    opened: list[Store] = []

    def open_store(name: str = "aiops.db") -> Store:
        opened.append(Store(tmp_path / name))
        return opened[-1]

    yield open_store
    for s in opened:
        s.close()


def executor(store: Store, books: list[Playbook], clock: Clock | None = None, **kw: Any) -> Executor:
    hooks = {k: kw.pop(k) for k in ("on_change", "verify", "changes") if k in kw}
    return Executor(store, books, ExecutorConfig(**kw), clock=clock or Clock(), **hooks)


def audit(store: Store, target: str) -> list[tuple[str, str, bool]]:
    return [(r["who"], r["action"], r["ok"]) for r in reversed(store.audit_log(target))]


def runs(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def approve_and_run(ex: Executor) -> Action:
    """Propose for the default incident, approve as alice, run one pass: the action afterwards."""
    a = ex.propose(incident())
    assert a is not None
    ex.decide(a.id, "alice", "approver", True)
    ex.run_due()
    return ex.action(a.id)


# -- playbook files ---------------------------------------------------------------------------------


def test_shipped_playbooks_load() -> None:
    books = {b.name: b for b in load_playbooks(SHIPPED)}
    assert set(books) == {"scale", "traffic-shift", "rollback"}
    assert (books["scale"].parameters["replicas"].min, books["scale"].parameters["replicas"].max) == (1, 50)
    assert (books["traffic-shift"].parameters["weight"].min, books["traffic-shift"].parameters["weight"].max) == (0, 100)
    assert books["rollback"].parameters["version"].from_ == "change.previous_version"
    assert all(b.revert and b.verify.within_s > 0 for b in books.values())


GOOD = {"name": "ok", "command": ["echo", "{n}"], "parameters": {"n": {"type": "int", "min": 1, "max": 5, "default": 2}}}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"shell": "echo hi"}, "shell: Extra inputs are not permitted"),
        ({"command": "echo {n}"}, "command: Input should be a valid list"),
        ({"command": ["echo", "{m}"]}, "undeclared parameter(s) ['m']"),
        ({"parameters": {"n": {"type": "int", "min": 5, "max": 1}}}, "min 5.0 is above max 1.0"),
        ({"parameters": {"n": {"type": "int", "max": 5, "default": 9}}}, "parameters.n.default"),
        ({"parameters": {"n": {"type": "enum"}}}, "an enum parameter needs choices"),
        ({"parameters": {"n": {"type": "str", "pattern": "("}}}, "pattern does not compile"),
        ({"parameters": {"n": {"type": "str", "from": "incident.nonsense"}}}, "parameters.n.from"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"name": "Bad Name"}, "name: String should match pattern"),
    ],
)
def test_playbook_errors_name_the_file_and_field(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    path = write_book(tmp_path, **{**GOOD, **change, "name": change.get("name", "ok")})
    with pytest.raises(ConfigError) as e:
        load_playbooks(tmp_path)
    assert str(path) in str(e.value) and expected in str(e.value)


def test_playbook_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_playbooks(tmp_path / "nowhere")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: cannot read playbook"):
        load_playbooks(tmp_path)
    (tmp_path / "broken.yaml").unlink()
    write_book(tmp_path, **GOOD)
    (tmp_path / "again.yml").write_text(yaml.safe_dump(GOOD))
    with pytest.raises(ConfigError, match="'ok' is already used"):
        load_playbooks(tmp_path)


# -- parameters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 51}, "'replicas' of playbook 'touch' = 51 is above the maximum 50"),
        ({"replicas": 0}, "is below the minimum 1"),
        ({"replicas": "3; rm -rf /"}, "must be an integer"),
        ({"replicas": True}, "must be an integer"),
        ({"level": "max"}, "is not one of ['low', 'high']"),
        ({"service": "cart; reboot"}, "forbidden character(s) ' ;'"),
        ({"service": "$(id)"}, "forbidden character(s) '$()'"),
        ({"service": "a|b"}, "forbidden character(s) '|'"),
        ({"service": "a&b"}, "forbidden"),
        ({"service": "`id`"}, "forbidden"),
        ({"service": "a>b"}, "forbidden"),
        ({"service": "a\nb"}, "forbidden"),
        ({"service": "it's"}, "forbidden"),
        ({"service": "--kubeconfig=/tmp/x"}, "may not start with '-'"),
        ({"service": "x" * 200}, "does not match"),
        ({"colour": "red"}, "has no parameter(s) ['colour']"),
    ],
)
def test_bad_parameters_are_rejected_and_audited(tmp_path: Path, stores, values: dict[str, Any], message: str) -> None:
    log = tmp_path / "runs.log"
    book = recording_book(tmp_path / "books", log)
    store = stores()
    ex = executor(store, [book])
    a = ex.propose(incident())
    assert a is not None
    with pytest.raises(InvalidRequest) as e:
        ex.decide(a.id, "alice", "approver", True, params=values)
    assert message in str(e.value)
    assert ex.action(a.id).status == "proposed" and not ex.action(a.id).decisions
    row = store.audit_log(a.id)[0]
    assert (row["who"], row["action"], row["ok"]) == ("alice", "approve", False)
    assert message in row["detail"]["reason"]
    assert ex.run_due() == 0 and runs(log) == []


def test_parameters_are_coerced_and_substituted_whole(tmp_path: Path) -> None:
    book = recording_book(tmp_path, tmp_path / "r.log")
    values = validate(book, {"service": "cart", "replicas": "7", "level": "high"})
    assert values == {"service": "cart", "replicas": 7, "level": "high", "log": str(tmp_path / "r.log")}
    argv = render(book.command, values, {"python": sys.executable, "playbooks": str(tmp_path)})
    assert argv[0] == sys.executable and argv[-4:] == ["run", "cart", "7", "high"]


def test_a_service_name_from_telemetry_with_metacharacters_is_not_proposed(tmp_path: Path, stores) -> None:
    store = stores()
    ex = executor(store, [recording_book(tmp_path, tmp_path / "r.log")])
    assert ex.propose(incident(service="cart;reboot", series="cart;reboot/process.cpu.utilization")) is None
    assert audit(store, "inc-1") == [("executor", "propose", False)]


# -- proposals --------------------------------------------------------------------------------------


def test_bad_release_proposes_rollback_to_the_previous_version(stores) -> None:
    changes = ChangeIndex()
    changes.add([ChangeEvent(5, "cart", "deployment", "1.3.0", {"deployment.previous_version": "1.2.7"})])
    store = stores()
    ex = executor(store, load_playbooks(SHIPPED), changes=changes)
    a = ex.propose(incident(suggested="rollback", changes=[("cart", "1.3.0")],
                            series="cart/http.server.request.count:error_ratio"))  # fmt: skip
    assert a is not None and a.playbook == "rollback" and a.service == "cart"
    assert a.params == {"service": "cart", "version": "1.2.7", "bad_version": "1.3.0", "namespace": "default"}
    assert a.command[-6:] == ["--service", "cart", "--to", "1.2.7", "--namespace", "default"]
    assert "suggests rollback" in a.reason


def test_rollback_version_from_the_incident_and_without_one(stores) -> None:
    ex = executor(stores(), load_playbooks(SHIPPED))
    a = ex.propose(incident(suggested="rollback", changes=[("cart", "1.2.0"), ("cart", "1.3.0")]))
    assert a is not None and a.params["version"] == "1.2.0"
    # No previous version known: rollback cannot apply; errors after a deploy fall to traffic-shift.
    b = ex.propose(incident("inc-2", suggested="rollback", changes=[("cart", "1.3.0")],
                            series="cart/http.server.request.count:error_ratio"))  # fmt: skip
    assert b is not None and b.playbook == "traffic-shift" and b.params["weight"] == 0


def test_saturation_proposes_scale_and_nothing_else_matches_nothing(stores) -> None:
    store = stores()
    ex = executor(store, load_playbooks(SHIPPED))
    a = ex.propose(incident(suggested=None, series="cart/process.cpu.utilization"))
    assert a is not None and a.playbook == "scale" and a.params["replicas"] == 4
    assert ex.propose(incident("inc-2", suggested=None, series="cart/http.server.request.duration:p99")) is None
    assert ex.propose(incident("inc-3", suggested=None, changes=[("cart", "2.0.0")],
                               series="cart/process.cpu.utilization")) is not None  # fmt: skip
    resolved = incident("inc-4").model_copy(update={"status": "resolved"})
    assert ex.propose(resolved) is None


def test_a_republished_incident_is_proposed_once(tmp_path: Path, stores) -> None:
    store = stores()
    seen: list[str] = []
    ex = executor(store, [recording_book(tmp_path, tmp_path / "r.log")], on_change=lambda a: seen.append(a.status))
    first = ex.propose(incident())
    again = executor(stores(), [recording_book(tmp_path, tmp_path / "r.log")]).propose(incident())
    assert first is not None and again is not None and first.id == again.id == ex.propose(incident()).id
    assert len(ex.actions(incident_id="inc-1")) == 1 and seen == ["proposed"]
    assert [r[1] for r in audit(store, first.id)] == ["propose"]


# -- approvals ---------------------------------------------------------------------------------------


def test_roles_and_names(tmp_path: Path, stores) -> None:
    store = stores()
    book = recording_book(tmp_path, tmp_path / "r.log", approvers=["sre-lead", "bob"])
    ex = executor(store, [book])
    a = ex.propose(incident())
    with pytest.raises(Forbidden, match="alice \\(role approver\\) may not decide playbook 'touch'"):
        ex.decide(a.id, "alice", "approver", True)
    assert ex.decide(a.id, "bob", "viewer", True).status == "approved"  # by name
    b = ex.propose(incident("inc-2"))
    assert ex.decide(b.id, "carol", "sre-lead", True).status == "approved"  # by role
    assert audit(store, a.id)[1:] == [("alice", "approve", False), ("bob", "approve", True)]
    with pytest.raises(NotFound):
        ex.decide("act-nope", "bob", "sre-lead", True)
    with pytest.raises(NotFound):
        ex.action("act-nope")


def test_two_approvers_double_clicks_and_changed_parameters(tmp_path: Path, stores) -> None:
    store = stores()
    ex = executor(store, [recording_book(tmp_path, tmp_path / "r.log")], required_approvals=2)
    a = ex.propose(incident())
    assert a.required_approvals == 2
    assert ex.decide(a.id, "alice", "approver", True).status == "proposed"
    assert ex.decide(a.id, "alice", "approver", True).status == "proposed"  # double click: still one
    assert ex.action(a.id).approvers == {"alice"} and len(ex.action(a.id).decisions) == 1
    # Bob changes the parameters: Alice approved something else, so the count starts again.
    after = ex.decide(a.id, "bob", "approver", True, params={"replicas": 6})
    assert after.status == "proposed" and after.approvers == {"bob"} and after.command[-3:] == ["cart", "6", "low"]
    final = ex.decide(a.id, "alice", "approver", True, params={"replicas": 6})
    assert final.status == "approved" and final.approvers == {"alice", "bob"}
    assert ex.decide(a.id, "alice", "approver", True).status == "approved"  # a click after approval
    with pytest.raises(Conflict, match="already approved"):
        ex.decide(a.id, "carol", "approver", True, params={"replicas": 9})
    assert [r[2] for r in audit(store, a.id)] == [True, True, True, True, True, True, False]


def test_reject_and_deciding_finished_actions(tmp_path: Path, stores) -> None:
    store = stores()
    ex = executor(store, [recording_book(tmp_path, tmp_path / "r.log")])
    a = ex.propose(incident())
    assert ex.decide(a.id, "alice", "approver", False, comment="not now").status == "rejected"
    assert ex.decide(a.id, "alice", "approver", False).status == "rejected"  # the same rejection again
    with pytest.raises(Conflict, match="is rejected"):
        ex.decide(a.id, "bob", "approver", True)
    assert ex.run_due() == 0 and ex.actions(status="rejected") == [ex.action(a.id)]
    # An approved action can still be stopped before it starts.
    b = ex.propose(incident("inc-2"))
    ex.decide(b.id, "alice", "approver", True)
    assert ex.decide(b.id, "bob", "approver", False).status == "rejected"
    assert ex.run_due() == 0 and runs(tmp_path / "r.log") == []


def test_expiry(tmp_path: Path, stores) -> None:
    clock = Clock()
    store = stores()
    ex = executor(store, [recording_book(tmp_path, tmp_path / "r.log", approval_ttl_s=600)], clock,
                  approval_ttl_s=3600)  # fmt: skip
    a = ex.propose(incident())
    assert a.expires_at == clock.t + 600  # the playbook's TTL wins
    clock.t += 601
    with pytest.raises(Conflict, match="expired"):
        ex.decide(a.id, "alice", "approver", True)
    assert ex.run_due() == 1 and ex.action(a.id).status == "expired"
    with pytest.raises(Conflict, match="is expired"):
        ex.decide(a.id, "alice", "approver", True)
    assert audit(store, a.id) == [("executor", "propose", True), ("alice", "approve", False),
                                  ("executor", "expire", True), ("alice", "approve", False)]  # fmt: skip


# -- exactly once -------------------------------------------------------------------------------------


def test_approve_via_rest_and_slack_runs_once_under_concurrent_workers(tmp_path: Path, stores) -> None:
    log = tmp_path / "r.log"
    store = stores()
    seen: list[str] = []
    ex = executor(store, [recording_book(tmp_path, log)], required_approvals=2, on_change=lambda a: seen.append(a.status))
    a = ex.propose(incident())
    ex.decide(a.id, "alice", "approver", True, comment="via REST")
    clicks = [threading.Thread(target=ex.decide, args=(a.id, "U024BE7LH", "approver", True, "via Slack"))
              for _ in range(4)]  # fmt: skip
    for t in clicks:
        t.start()
    for t in clicks:
        t.join()
    assert ex.action(a.id).status == "approved"
    workers = [threading.Thread(target=ex.run_due) for _ in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert runs(log) == ["run cart 3 low"]
    done = ex.action(a.id)
    assert (done.status, done.exit_code, done.attempts, done.verification) == ("succeeded", 0, 1, "skipped")
    assert seen == ["proposed", "proposed", "approved", "running", "succeeded"]  # 1/2 approvals, then 2/2
    rows = audit(store, a.id)
    assert [r[1] for r in rows] == ["propose", "approve"] + ["approve"] * 4 + ["run"]
    run_row = store.audit_log(a.id)[0]["detail"]
    assert run_row["exit_code"] == 0 and run_row["command"][-4:] == ["run", "cart", "3", "low"]


def test_two_executors_on_one_database_file_run_once(tmp_path: Path, stores) -> None:
    log = tmp_path / "r.log"
    book = recording_book(tmp_path, log)
    first, second = executor(stores(), [book]), executor(stores(), [book])  # two connections, as two processes
    ids = [first.propose(incident(f"inc-{i}", service=f"svc{i}")).id for i in range(5)]
    for i in ids:
        second.decide(i, "alice", "approver", True)
    workers = [threading.Thread(target=ex.run_due) for ex in (first, second) for _ in range(3)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert sorted(runs(log)) == sorted(f"run svc{i} 3 low" for i in range(5))
    assert {a.status for a in first.actions()} == {"succeeded"}


def test_two_processes_on_one_database_file_run_once(tmp_path: Path, stores) -> None:
    import subprocess

    log = tmp_path / "r.log"
    book = recording_book(tmp_path / "books", log)
    ex = executor(stores(), [book], Clock(time.time()))  # the workers run on the real clock
    for i in range(4):
        ex.decide(ex.propose(incident(f"inc-{i}", service=f"svc{i}")).id, "alice", "approver", True)
    worker = (f"import sys; sys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"
              "from aiops.act.config import ExecutorConfig\nfrom aiops.act.executor import Executor\n"
              "from aiops.act.playbooks import load_playbooks\nfrom aiops.store.sqlite import Store\n"
              f"s = Store({str(tmp_path / 'aiops.db')!r})\n"
              f"Executor(s, load_playbooks({str(tmp_path / 'books')!r}), ExecutorConfig()).run_due()\ns.close()\n")  # fmt: skip
    procs = [subprocess.Popen([sys.executable, "-c", worker]) for _ in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert sorted(runs(log)) == sorted(f"run svc{i} 3 low" for i in range(4))


class Crash(BaseException):
    """Stands for the process dying: nothing in the executor catches it."""


@pytest.mark.parametrize("idempotent", [True, False])
def test_recover_after_a_crash_mid_run(tmp_path: Path, stores, idempotent: bool) -> None:
    log, clock = tmp_path / "r.log", Clock()
    book = recording_book(tmp_path, log, idempotent=idempotent)

    def die_when_running(a: Action) -> None:
        if a.status == "running":
            raise Crash

    store = stores()
    doomed = executor(store, [book], clock, on_change=die_when_running)
    a = doomed.propose(incident())
    doomed.decide(a.id, "alice", "approver", True)
    with pytest.raises(Crash):
        doomed.run_due()
    assert doomed.action(a.id).status == "running" and runs(log) == []
    restarted = executor(stores(), [book], clock)
    restarted.recover()  # the lease is still held: the crashed runner might be alive elsewhere
    assert restarted.action(a.id).status == "running"
    clock.t += LEASE_S + 1
    restarted.recover()
    restarted.run_due()
    after = restarted.action(a.id)
    if idempotent:
        assert (after.status, after.attempts, runs(log)) == ("succeeded", 2, ["run cart 3 low"])
        assert [r[1:] for r in audit(store, a.id)][-2:] == [("recover", True), ("run", True)]
    else:
        assert (after.status, runs(log)) == ("interrupted", [])
        assert audit(store, a.id)[-1] == ("executor", "recover", False)
        assert "not idempotent" in store.audit_log(a.id)[0]["detail"]["outcome"]


# -- running ------------------------------------------------------------------------------------------


def test_timeout_kills_the_process_group(tmp_path: Path, stores) -> None:
    survived = tmp_path / "survived"
    grandchild = f"import time; time.sleep(2.5); open({str(survived)!r}, 'w')"
    spawn = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}]);"
             " print('started', flush=True); time.sleep(60)")  # fmt: skip
    book = recording_book(tmp_path, tmp_path / "r.log", command=["{python}", "-c", spawn], timeout_s=1.5)
    store = stores()
    done = approve_and_run(executor(store, [book]))
    assert (done.status, done.timed_out, done.exit_code) == ("failed", True, None)
    assert done.stdout == "started\n" and "timeout" in done.stderr
    assert store.audit_log(done.id)[0]["detail"]["timed_out"] is True
    time.sleep(3.0)  # the grandchild, had it survived, would have written its file by now
    assert not survived.exists()


def test_output_is_captured_and_bounded(tmp_path: Path, stores) -> None:
    chatty = "import sys; print('x' * 100000); print('the end'); sys.stderr.write('oops'); sys.exit(3)"
    book = recording_book(tmp_path, tmp_path / "r.log", command=["{python}", "-c", chatty])
    store = stores()
    ex = executor(store, [book])
    done = approve_and_run(ex)
    assert (done.status, done.exit_code, done.stderr) == ("failed", 3, "oops")
    assert done.stdout.startswith("[... ") and done.stdout.endswith("the end\n") and len(done.stdout) < 20_000
    assert store.audit_log(done.id)[0]["detail"]["stderr"] == "oops"


def test_dry_run_records_the_command_without_running_it(tmp_path: Path, stores) -> None:
    log = tmp_path / "r.log"
    store = stores()
    ex = executor(store, [recording_book(tmp_path, log)], dry_run=True, verify=lambda a: True)
    done = approve_and_run(ex)
    assert (done.status, done.dry_run, done.exit_code, done.verification) == ("succeeded", True, None, "skipped")
    assert done.command[-4:] == ["run", "cart", "3", "low"] and runs(log) == []
    row = store.audit_log(done.id)[0]
    assert row["action"] == "dry-run" and row["detail"]["command"] == done.command


def test_blast_radius(tmp_path: Path, stores) -> None:
    log, clock = tmp_path / "r.log", Clock()
    store = stores()
    ex = executor(store, [recording_book(tmp_path, log)], clock, max_actions_per_hour=2,
                  max_actions_per_service_per_hour=1, approval_ttl_s=7200)  # fmt: skip
    ids = []
    for i, service in enumerate(["cart", "cart", "ads", "pay"]):
        ids.append(ex.propose(incident(f"inc-{i}", service=service)).id)
        ex.decide(ids[-1], "alice", "approver", True)
        clock.t += 1  # oldest first
    ex.run_due()
    ex.run_due()
    assert runs(log) == ["run cart 3 low", "run ads 3 low"]
    second_cart, pay = ex.action(ids[1]), ex.action(ids[3])
    assert second_cart.status == "approved" and "on cart" in second_cart.blocked
    assert pay.status == "approved" and "max_actions_per_hour" in pay.blocked
    assert [r[1:] for r in audit(store, ids[1])].count(("refuse", False)) == 1  # audited once, not every pass
    clock.t += 3601
    ex.run_due()
    assert sorted(runs(log)[2:]) == ["run cart 3 low", "run pay 3 low"]
    assert ex.action(ids[1]).blocked == ""


def test_verification_passes(tmp_path: Path, stores) -> None:
    answers = iter([None, False, True])
    clock = Clock()
    store = stores()
    ex = executor(store, [recording_book(tmp_path, tmp_path / "r.log")], clock, verify=lambda a: next(answers))
    a = ex.propose(incident())
    ex.decide(a.id, "alice", "approver", True)
    ex.run_due()  # runs, then the first poll: not known yet
    assert ex.action(a.id).verification == "pending"
    clock.t += 30
    ex.run_due()  # still bad, within the minute the playbook allows
    assert ex.action(a.id).verification == "pending"
    ex.run_due()
    done = ex.action(a.id)
    assert (done.status, done.verification, done.verified_at, done.reverted) == ("succeeded", "passed", clock.t, False)
    assert audit(store, a.id)[-1] == ("executor", "verify", True)


def test_verification_by_the_incident_resolving(tmp_path: Path, stores) -> None:
    store = stores()
    ex = executor(store, [recording_book(tmp_path, tmp_path / "r.log")], verify=incident_resolved(store))
    inc = incident()
    store.commit([inc], [])
    a = ex.propose(inc)
    ex.decide(a.id, "alice", "approver", True)
    ex.run_due()
    assert ex.action(a.id).verification == "pending"
    store.commit([inc.model_copy(update={"status": "resolved", "updated_at_unix_nano": 3})], [])
    ex.run_due()
    assert ex.action(a.id).verification == "passed"


def test_failed_verification_reverts(tmp_path: Path, stores) -> None:
    log, clock = tmp_path / "r.log", Clock()
    store = stores()
    seen: list[tuple[str, str]] = []
    ex = executor(store, [recording_book(tmp_path, log)], clock, verify=lambda a: False,
                  on_change=lambda a: seen.append((a.status, a.verification)))  # fmt: skip
    a = ex.propose(incident())
    ex.decide(a.id, "alice", "approver", True)
    ex.run_due()
    clock.t += 61
    ex.run_due()
    ex.run_due()
    done = ex.action(a.id)
    assert (done.status, done.verification, done.reverted) == ("reverted", "failed", True)
    assert done.revert is not None and done.revert.exit_code == 0
    assert runs(log) == ["run cart 3 low", "revert cart"]
    assert seen[-3:] == [("succeeded", "failed"), ("reverting", "failed"), ("reverted", "failed")]
    assert [r[1:] for r in audit(store, a.id)][-2:] == [("verify", False), ("revert", True)]


# -- the shipped scripts --------------------------------------------------------------------------------


def error_ratio(sim: Simulator, service: str, steps: int) -> float:
    """The service's error ratio over the next ``steps`` windows, read from its emitted metrics."""

    def counts() -> tuple[int, int]:
        ok = err = 0
        for m in sim.step():
            if m.kind == "metrics" and m.key == service:
                metric = json.loads(m.payload)["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
                points = next(x for x in metric if x["name"] == "http.server.request.count")["sum"]["dataPoints"]
                for p in points:
                    is_err = any(kv["key"] == "http.response.status_code" and int(kv["value"]["intValue"]) >= 500
                                 for kv in p.get("attributes", []))  # fmt: skip
                    ok, err = (ok, err + int(p["asInt"])) if is_err else (ok + int(p["asInt"]), err)
        return ok, err

    ok0, err0 = counts()
    for _ in range(steps - 1):
        ok1, err1 = counts()
    return (err1 - err0) / max(1, (ok1 - ok0) + (err1 - err0))


def sim_changes(sim: Simulator) -> ChangeIndex:
    index = ChangeIndex()
    index.add([ChangeEvent(d["at_unix_nano"], d["service"], "deployment", d["version"],
                           {"deployment.previous_version": d["previous"]}) for d in sim.deployments])  # fmt: skip
    return index


@pytest.mark.parametrize("fix", ["rollback", "traffic-shift"])
def test_playbooks_against_the_simulator_end_a_bad_release(stores, fix: str) -> None:
    sim = Simulator(n_services=8, seed=3, step_seconds=10, faults=[FaultSpec("cart", "bad_release", 10, 3600, 0.5)])
    bad = error_ratio(sim, "cart", 8)
    assert bad > 0.3
    deployed = sim.deployments[-1]
    with ControlServer(sim) as control:
        store = stores()
        suggested = "rollback" if fix == "rollback" else None
        ex = executor(store, load_playbooks(SHIPPED), target="sim", sim_control_url=control.url, changes=sim_changes(sim))
        a = ex.propose(incident(suggested=suggested, changes=[("cart", deployed["version"])],
                                series="cart/http.server.request.count:error_ratio"))  # fmt: skip
        assert a is not None and a.playbook == fix
        ex.decide(a.id, "alice", "approver", True)
        ex.run_due()
        done = ex.action(a.id)
        assert done.status == "succeeded", done.stderr
        assert "/rollback" in done.stdout if fix == "rollback" else "/traffic" in done.stdout
    after = error_ratio(sim, "cart", 6)
    assert after < 0.05 < bad
    if fix == "rollback":
        assert sim.deployments[-1] | {"at_unix_nano": 0} == {
            "service": "cart", "version": deployed["previous"], "previous": deployed["version"], "at_unix_nano": 0,
            "fault": True, "rollback": True}  # fmt: skip
    else:
        assert sim.control_state()["cart"]["canary_weight"] == 0


def test_scale_against_the_simulator_lowers_cpu_and_restarts_a_leak(stores) -> None:
    sim = Simulator(n_services=8, seed=3, step_seconds=10,
                    faults=[FaultSpec("cart", "cpu", 0, 3600, 0.5), FaultSpec("catalog", "memory_leak", 0, 600, 0.9)])  # fmt: skip

    def gauge(name: str, service: str) -> float:
        for m in sim.step():
            if m.kind == "metrics" and m.key == service:
                metrics = json.loads(m.payload)["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
                point = next(x for x in metrics if x["name"] == name)["gauge"]["dataPoints"][0]
                return float(point.get("asDouble", point.get("asInt")))
        raise AssertionError(service)

    for _ in range(30):
        sim.step()
    cpu_before, memory_before = gauge("process.cpu.utilization", "cart"), gauge("process.memory.usage", "catalog")
    with ControlServer(sim) as control:
        ex = executor(stores(), load_playbooks(SHIPPED), target="sim", sim_control_url=control.url)
        for inc, service in (("inc-cpu", "cart"), ("inc-mem", "catalog")):
            a = ex.propose(incident(inc, service=service, series=f"{service}/process.cpu.utilization"))
            ex.decide(a.id, "alice", "approver", True, params={"replicas": 8})
        ex.run_due()
        assert {a.status for a in ex.actions()} == {"succeeded"}
    assert gauge("process.cpu.utilization", "cart") < cpu_before - 0.3
    assert gauge("process.memory.usage", "catalog") < 0.8 * memory_before
    assert sim.control_state()["cart"]["replicas"] == 8


def test_control_api_refuses_bad_requests() -> None:
    import urllib.error
    import urllib.request

    sim = Simulator(n_services=5, seed=1)
    with ControlServer(sim) as control:
        def post(path: str, body: Any) -> tuple[int, dict[str, Any]]:
            req = urllib.request.Request(control.url + path, data=json.dumps(body).encode(), method="POST")
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                with e:
                    return e.code, json.loads(e.read())

        assert post("/scale", {"service": "nope", "replicas": 2})[0] == 404
        assert post("/scale", {"service": "cart"}) == (400, {"error": "missing field(s) ['replicas']"})
        assert post("/traffic", {"service": "cart", "canary_weight": 150})[0] == 400
        assert post("/rollback", {"service": "cart"})[1]["note"] == "nothing to roll back"
        assert post("/reboot", {})[0] == 404




@pytest.mark.parametrize(
    ("playbook", "params", "expected"),
    [
        ("scale", {"replicas": 7},
         [["--namespace", "default", "scale", "deployment/cart", "--replicas=7"],
          ["--namespace", "default", "rollout", "status", "deployment/cart", "--timeout=90s"]]),
        ("rollback", {"version": "1.2.0", "namespace": "shop"},
         [["--namespace", "shop", "get", "deployment/cart", ("--output=jsonpath={.spec.template.spec.containers[0].name}"
                                                            " {.spec.template.spec.containers[0].image}")],
          ["--namespace", "shop", "set", "image", "deployment/cart", "cart=registry.local:5000/shop/cart:1.2.0"],
          ["--namespace", "shop", "rollout", "status", "deployment/cart", "--timeout=90s"]]),
        ("traffic-shift", {"weight": 10}, None),
    ],
)  # fmt: skip
def test_scripts_build_kubectl_argument_lists(tmp_path: Path, stores, monkeypatch: pytest.MonkeyPatch,
                                              playbook: str, params: dict[str, Any], expected: Any) -> None:  # fmt: skip
    bin_dir, calls = tmp_path / "bin", tmp_path / "kubectl.log"
    fake_kubectl.install(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBECTL_LOG", str(calls))
    monkeypatch.delenv("AIOPS_EXECUTOR__TARGET", raising=False)
    ex = executor(stores(), [b for b in load_playbooks(SHIPPED) if b.name == playbook])
    a = ex.propose(incident(suggested="rollback" if playbook == "rollback" else "scale-out",
                            changes=[("cart", "1.2.0"), ("cart", "1.3.0")] if playbook != "scale" else [],
                            series="cart/http.server.request.count:error_ratio"))  # fmt: skip
    assert a is not None and a.playbook == playbook
    ex.decide(a.id, "alice", "approver", True, params=params)
    ex.run_due()
    done = ex.action(a.id)
    assert done.status == "succeeded", done.stdout + done.stderr
    argvs = [json.loads(line) for line in calls.read_text().splitlines()]
    if expected is not None:
        assert argvs == expected
    else:
        assert argvs[0][:5] == ["--namespace", "default", "patch", "virtualservice/cart", "--type=json"]
        patch = json.loads(argvs[0][5].removeprefix("--patch="))
        assert [op["value"] for op in patch if op["op"] == "replace"] == [90, 10]
    assert "+ kubectl --namespace" in done.stdout  # the script echoes what it ran into the audit log


def test_sim_target_needs_a_url(stores) -> None:
    with pytest.raises(ConfigError, match="sim_control_url"):
        executor(stores(), [], target="sim")


def test_a_resolved_incident_withdraws_unapproved_proposals(stores) -> None:
    ex = executor(stores(), load_playbooks(SHIPPED))
    a = ex.propose(incident(suggested="scale-out", series="cart/process.memory.utilization"))
    assert a is not None and a.status == "proposed"
    (gone,) = ex.withdraw(a.incident_id)
    assert gone.id == a.id and ex.action(a.id).status == "expired"
    assert ex.withdraw(a.incident_id) == [], "nothing left to withdraw"
    with pytest.raises(Conflict):
        ex.decide(a.id, "alice", "approver", True)
