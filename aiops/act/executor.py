"""The executor: proposals, approvals and exactly-once runs of playbook commands, all audited.

Safety rules, each enforced here and each refusal written to the audit log with its reason:

- **Approval.** A proposal runs only after ``max(executor.required_approvals,
  playbook.required_approvals)`` distinct people allowed by the playbook (``approvers``: roles or
  names) approved the parameters as they stand; changing parameters restarts the count, so a
  second approver can never be bypassed by editing what the first approved. One rejection, even
  after approval but before the run starts, ends it. The same person approving twice counts once.
- **Expiry.** A proposal, and an approval that could not start (see blast radius), lapses at
  ``expires_at`` (``approval_ttl_s``, or the playbook's): an action is never run long after the
  situation it was approved for.
- **Exactly once.** Every transition is a conditional UPDATE in one SQLite transaction
  (:mod:`aiops.act.ledger`), so double clicks, API threads, several executors on one database file
  and restarts never run an approval twice. A running action holds a lease renewed while its
  command runs; when the lease lapses (the process died) the action is re-run if the playbook is
  ``idempotent``, else marked ``interrupted`` for a person to look at. :meth:`Executor.recover`
  does that at startup, and every :meth:`Executor.run_due` pass does it for leases that lapse later.
  With ``detached``, a supervisor process (:mod:`aiops.act.supervise`) holds the lease and settles
  the action, so a run outlives the engine that started it and a standby does not repeat it.
- **Blast radius.** At most ``max_actions_per_hour`` runs start per rolling hour, and
  ``max_actions_per_service_per_hour`` per service. An approved action over the limit is not
  refused outright: it stays ``approved`` with ``blocked`` saying why (audited once) and starts
  when the window allows, or expires. Dry runs and reverts do not count.
- **Dry run.** The exact command is rendered and recorded, never run.
- **Verification.** After a successful run, ``verify(action)`` is polled each pass until it
  answers True, or ``verify.within_s`` passes: then the playbook's ``revert`` command runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiops.act import ledger, match, params, runner
from aiops.act.config import ExecutorConfig
from aiops.act.model import OPEN_STATUSES, Action, Decision, Outcome
from aiops.act.playbooks import Playbook
from aiops.correlate.changes import ChangeIndex
from aiops.correlate.contract import Incident
from aiops.errors import ConfigError, Conflict, Forbidden, InvalidRequest, NotFound, RequestError
from aiops.store.sqlite import Store

log = logging.getLogger(__name__)
LEASE_S = 30.0  # a runner renews its lease every second; this long without renewal means it died
HOUR_S = 3600.0
SYSTEM = "executor"  # the audit log's "who" for what the executor does on its own
_HOME = Path(__file__).resolve().parents[2]  # holds this aiops package: a supervisor started here imports it


class Executor:
    """Proposes, gates and runs playbooks; every method is safe to call from any thread."""

    def __init__(
        self,
        store: Store,
        playbooks: list[Playbook],
        config: ExecutorConfig,
        *,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[Action], None] | None = None,
        verify: Callable[[Action], bool | None] | None = None,
        changes: ChangeIndex | None = None,
    ) -> None:
        if config.target == "sim" and not config.sim_control_url:
            raise ConfigError("executor.target is 'sim' but executor.sim_control_url is not set")
        if config.detached and (loose := [p.name for p in playbooks if p.path is None]):
            raise ConfigError(f"executor.detached needs playbooks loaded from files; not so: {', '.join(loose)}")
        self.store, self.config, self.clock = store, config, clock
        self.playbooks = {p.name: p for p in playbooks}
        self.on_change, self.verify, self.changes = on_change, verify, changes
        store.migrate("actions", ledger.MIGRATIONS)

    # -- proposals and decisions -----------------------------------------------------------------

    def propose(self, incident: Incident) -> Action | None:
        """The action for ``incident``: the open one it already has, a new proposal, or None.

        Re-publishing an incident returns its existing action (``on_change`` fires only when a
        proposal is created). A playbook whose parameters the incident cannot fill (no previous
        version to roll back to) is passed over; one whose values fail validation (a service name
        from telemetry holding shell metacharacters) is refused and audited.
        """
        with self.store.lock:
            open_ = ledger.select(self.store.db, f"incident_id = ? AND status IN {OPEN_STATUSES}", (incident.id,))
        if open_:
            return open_[0]
        values = match.sources(incident, self.changes.previous_version if self.changes else None)
        for book, why in match.candidates(list(self.playbooks.values()), incident):
            given = {n: values[s.from_] for n, s in book.parameters.items() if s.from_ and values[s.from_] is not None}
            if any(n not in given and s.from_ and s.default is None for n, s in book.parameters.items()):
                continue  # e.g. a rollback with no known previous version
            try:
                checked = params.validate(book, given)
            except InvalidRequest as e:
                self.store.audit(SYSTEM, "propose", incident.id, False, playbook=book.name, reason=str(e))
                continue
            now = self.clock()
            action = Action(
                id="act-" + hashlib.sha256(f"{incident.id}\0{book.name}".encode()).hexdigest()[:16],
                incident_id=incident.id, playbook=book.name, service=str(values["incident.root_cause"]),
                params=checked, status="proposed", reason=why,
                required_approvals=max(self.config.required_approvals, book.required_approvals),
                proposed_at=now, expires_at=now + (book.approval_ttl_s or self.config.approval_ttl_s),
                command=self._command(book, book.command, checked), dry_run=self.config.dry_run,
            )  # fmt: skip
            with self.store.write() as db:
                created = ledger.insert(db, action)
                stored = ledger.get(db, action.id)
            if created:
                self.store.audit(SYSTEM, "propose", action.id, True, incident=incident.id, playbook=book.name,
                                 params=checked, reason=why)  # fmt: skip
                self._changed(action)
            return stored
        return None

    def decide(self, action_id: str, who: str, role: str, approve: bool, comment: str = "",
               params: dict[str, Any] | None = None) -> Action:  # fmt: skip
        """Approve or reject; raises NotFound, Forbidden, Conflict or InvalidRequest, each audited."""
        verb = "approve" if approve else "reject"
        try:
            with self.store.write() as db:
                action, changed = self._decide(db, action_id, who, role, approve, comment, params)
        except RequestError as e:
            self.store.audit(who, verb, action_id, False, role=role, reason=str(e), params=params, comment=comment)
            raise
        self.store.audit(who, verb, action_id, True, role=role, status=action.status, params=action.params,
                         approvals=f"{len(action.approvers)}/{action.required_approvals}", repeated=not changed,
                         comment=comment)  # fmt: skip
        if changed:
            self._changed(action)
        return action

    def _decide(self, db: Any, action_id: str, who: str, role: str, approve: bool, comment: str,
                overrides: dict[str, Any] | None) -> tuple[Action, bool]:  # fmt: skip
        a = ledger.get(db, action_id)
        if a is None:
            raise NotFound(f"no action {action_id!r}")
        book = self._playbook(a)
        if not book.allows(who, role):
            raise Forbidden(f"{who} (role {role}) may not decide playbook {a.playbook!r}; "
                            f"allowed roles or people: {', '.join(book.approvers)}")  # fmt: skip
        if not approve and a.status == "rejected" and any(d.who == who and not d.approve for d in a.decisions):
            return a, False  # the same rejection again
        if a.status in ("proposed", "approved") and self.clock() >= a.expires_at:
            raise Conflict(f"action {action_id} expired at {_iso(a.expires_at)}; wait for a new proposal")
        if a.status not in ("proposed", "approved"):
            raise Conflict(f"action {action_id} is {a.status}; only proposed or approved actions can be decided")
        new_params = params.validate(book, {**a.params, **overrides}) if overrides else a.params
        before = a.status
        if not approve:
            a.status = "rejected"
        elif who in a.approvers and new_params == a.params:
            return a, False  # a double click, or a retried request: counted once
        elif before == "approved":
            if new_params != a.params:
                raise Conflict(f"action {action_id} is already approved; its parameters can no longer change")
        else:
            a.params = new_params
            a.command = self._command(book, book.command, new_params)
        a.decisions.append(Decision(who=who, role=role, approve=approve, at=self.clock(), comment=comment,
                                    params=a.params))  # fmt: skip
        if approve and len(a.approvers) >= a.required_approvals:
            a.status = "approved"
        if not ledger.save(db, a, before):
            raise Conflict(f"action {action_id} changed while being decided; retry")
        return a, True

    def action(self, action_id: str) -> Action:
        with self.store.lock:
            a = ledger.get(self.store.db, action_id)
        if a is None:
            raise NotFound(f"no action {action_id!r}")
        return a

    def actions(self, status: str | None = None, incident_id: str | None = None) -> list[Action]:
        conds = {"status = ?": status, "incident_id = ?": incident_id}
        where = " AND ".join(c for c, v in conds.items() if v is not None)
        with self.store.lock:
            return ledger.select(self.store.db, where, tuple(v for v in conds.values() if v is not None))

    # -- the worker ------------------------------------------------------------------------------

    def run(self, stop: threading.Event, interval_s: float = 0.5) -> None:
        """Call :meth:`run_due` until ``stop`` is set; a failing pass is logged, never fatal."""
        while not stop.is_set():
            try:
                self.run_due()
            except Exception:
                log.exception("executor pass failed")
            stop.wait(interval_s)

    def run_due(self) -> int:
        """One pass: reap lapsed leases, expire, start approved actions, verify, revert."""
        n = self._reap() + self._expire()
        while (claimed := self._claim()) is not None:
            self._execute(claimed)
            n += 1
        n += self._verify()
        while (reverting := self._claim_revert()) is not None:
            self._execute(reverting)
            n += 1
        return n

    def recover(self) -> None:
        """At startup: settle actions whose runner died (lease lapsed): re-run if idempotent, else interrupted."""
        self._reap()

    def _reap(self) -> int:
        now = self.clock()
        n = 0
        with self.store.lock:
            orphans = ledger.select(self.store.db, "status IN ('running', 'reverting') AND lease_until < ?", (now,))
        for a in orphans:
            before = a.status
            book = self.playbooks.get(a.playbook)
            if book is not None and book.idempotent:
                a.status = "approved" if before == "running" else "succeeded"  # back in the queue
                what = "re-run" if before == "running" else "revert again"
            else:
                a.status, a.finished_at = "interrupted", now
                what = "interrupted: not idempotent, a person must check what it did"
            with self.store.write() as db:
                if not ledger.save(db, a, before):
                    continue
            self.store.audit(SYSTEM, "recover", a.id, a.status != "interrupted", was=before, outcome=what)
            self._changed(a)
            n += 1
        return n

    def withdraw(self, incident_id: str, reason: str = "the incident resolved before anyone approved") -> list[Action]:
        """Expire the incident's proposals nobody has approved yet: the problem is gone.

        Approved actions stay: an expert decided, and a run already started is never cut short.
        """
        now = self.clock()
        with self.store.lock:
            due = ledger.select(self.store.db, "status = 'proposed' AND incident_id = ?", (incident_id,))
        out = []
        for a in due:
            a.status, a.finished_at = "expired", now
            with self.store.write() as db:
                if not ledger.save(db, a, "proposed"):
                    continue
            self.store.audit(SYSTEM, "withdraw", a.id, True, incident=incident_id, reason=reason)
            self._changed(a)
            out.append(a)
        return out

    def _expire(self) -> int:
        now = self.clock()
        with self.store.lock:
            due = ledger.select(self.store.db, "status IN ('proposed', 'approved') AND expires_at <= ?", (now,))
        n = 0
        for a in due:
            before, a.status, a.finished_at = a.status, "expired", now
            with self.store.write() as db:
                if not ledger.save(db, a, before):
                    continue
            self.store.audit(SYSTEM, "expire", a.id, True, was=before, expires_at=a.expires_at,
                             approvals=f"{len(a.approvers)}/{a.required_approvals}", blocked=a.blocked)  # fmt: skip
            self._changed(a)
            n += 1
        return n

    def _claim(self) -> Action | None:
        """Take one approved action to run (status → running, under a lease), within the blast radius."""
        now = self.clock()
        blocked: list[Action] = []
        claimed = None
        with self.store.write() as db:
            for a in ledger.select(db, "status = 'approved' AND expires_at > ?", (now,)):
                reason = "" if self.config.dry_run else self._over_limit(db, a, now)
                if reason:
                    if a.blocked != reason:
                        a.blocked = reason
                        ledger.save(db, a, "approved")
                        blocked.append(a)
                    continue
                a.blocked, a.status, a.started_at, a.attempts = "", "running", now, a.attempts + 1
                a.dry_run = self.config.dry_run
                if ledger.save(db, a, "approved", lease_until=now + LEASE_S):
                    claimed = a
                    break
        for a in blocked:
            self.store.audit(SYSTEM, "refuse", a.id, False, reason=a.blocked)
            self._changed(a)
        if claimed is not None:
            self._changed(claimed)
        return claimed

    def _over_limit(self, db: Any, a: Action, now: float) -> str:
        since = now - HOUR_S
        on_service = ledger.started_since(db, since, a.service, exclude=a.id)
        if on_service >= self.config.max_actions_per_service_per_hour:
            return (f"blast radius: {on_service} actions on {a.service} in the last hour "
                    "(max_actions_per_service_per_hour)")  # fmt: skip
        total = ledger.started_since(db, since, exclude=a.id)
        if total >= self.config.max_actions_per_hour:
            return f"blast radius: {total} actions started in the last hour (max_actions_per_hour)"
        return ""

    def _claim_revert(self) -> Action | None:
        names = tuple(n for n, b in self.playbooks.items() if b.revert)
        if not names:
            return None
        now = self.clock()
        marks = ",".join("?" * len(names))
        with self.store.write() as db:
            for a in ledger.select(db, f"status = 'succeeded' AND verification = 'failed' AND playbook IN ({marks})",
                                   names):  # fmt: skip
                if a.revert is None:
                    a.status = "reverting"
                    if ledger.save(db, a, "succeeded", lease_until=now + LEASE_S):
                        break
            else:
                return None
        self._changed(a)
        return a

    def _execute(self, a: Action) -> None:
        """Carry out the claimed action's command (or its revert): here, or in a detached supervisor."""
        settled = self._detach(a) if self.config.detached else self.carry_out(a, verifies=self.verify is not None)
        if settled is not None:
            self._changed(settled)

    def carry_out(self, a: Action, *, verifies: bool) -> Action | None:
        """Run the claimed ``a`` under its lease and record the outcome in the ledger and the audit log.

        ``verifies``: a verification pass follows, so a real success waits for it (``pending``).
        Returns the settled action, or None when the lease lapsed mid-run and another worker settled it.
        """
        book = self._playbook(a)
        reverting = a.status == "reverting"
        if a.dry_run and not reverting:
            outcome = Outcome(command=a.command, stdout="[dry run: not executed]")
        else:
            argv = self._command(book, book.revert or [], a.params) if reverting else a.command
            outcome = runner.run(argv, book.timeout_s, env=self._env(a), cwd=book.path.parent if book.path else None,
                                 on_tick=lambda: self._renew(a.id))  # fmt: skip
        before = a.status
        a.finished_at = self.clock()
        ok = outcome.ok or (a.dry_run and not reverting)
        if reverting:
            a.revert, a.reverted = outcome, ok
            a.status = "reverted" if ok else "failed"
        else:
            a.exit_code, a.stdout, a.stderr, a.timed_out = (outcome.exit_code, outcome.stdout, outcome.stderr,
                                                            outcome.timed_out)  # fmt: skip
            a.status = "succeeded" if ok else "failed"
            a.verification = "pending" if ok and not a.dry_run and verifies else "skipped"
        with self.store.write() as db:
            saved = ledger.save(db, a, before)
        what = "revert" if reverting else "dry-run" if a.dry_run else "run"
        self.store.audit(SYSTEM, what, a.id, ok and saved, playbook=a.playbook, command=outcome.command,
                         exit_code=outcome.exit_code, timed_out=outcome.timed_out, stdout=outcome.stdout,
                         stderr=outcome.stderr, attempt=a.attempts,
                         **({} if saved else {"lost": "lease lapsed mid-run; another worker settled this action"}))  # fmt: skip
        return a if saved else None

    def _detach(self, a: Action) -> Action | None:
        """Hand the claimed ``a`` to a supervisor process and wait for it: the action it settled, or None.

        The supervisor runs in a session of its own and owns the lease, so if this process dies it
        still settles the action, and an executor taking over sees a live lease and leaves it alone.
        If the supervisor dies instead, its lease lapses and :meth:`_reap` applies as for any runner.
        """
        book = self._playbook(a)
        assert book.path is not None  # checked in __init__
        argv = [sys.executable, "-m", "aiops.act.supervise", "--db", str(self.store.path.resolve()),
                "--playbooks", str(book.path.parent), "--config", self.config.model_dump_json(), "--action", a.id,
                "--mode", "revert" if a.status == "reverting" else "run",
                *(["--verifies"] if self.verify is not None else [])]  # fmt: skip
        with subprocess.Popen(argv, cwd=_HOME, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              start_new_session=True) as proc:  # fmt: skip
            code = proc.wait()
        if code != 0:
            log.error("the supervisor of action %s exited with %s; its lease decides what happens next", a.id, code)
            return None
        return self.action(a.id)

    def _renew(self, action_id: str) -> None:
        with self.store.write() as db:
            ledger.renew(db, action_id, self.clock() + LEASE_S)

    def _verify(self) -> int:
        if self.verify is None:
            return 0
        with self.store.lock:
            pending = ledger.select(self.store.db, "status = 'succeeded' AND verification = 'pending'")
        n = 0
        for a in pending:
            try:
                result = self.verify(a)
            except Exception:
                log.exception("verification of %s failed to answer", a.id)
                result = None
            now = self.clock()
            deadline = (a.finished_at or now) + self._playbook(a).verify.within_s
            if result is True:
                a.verification, a.verified_at = "passed", now
            elif now >= deadline:
                a.verification = "failed"
            else:
                continue
            with self.store.write() as db:
                current = ledger.get(db, a.id)
                if current is None or current.verification != "pending" or not ledger.save(db, a, "succeeded"):
                    continue
            self.store.audit(SYSTEM, "verify", a.id, result is True, verification=a.verification,
                             within_s=self._playbook(a).verify.within_s)  # fmt: skip
            self._changed(a)
            n += 1
        return n

    # -- helpers ---------------------------------------------------------------------------------

    def _playbook(self, a: Action) -> Playbook:
        book = self.playbooks.get(a.playbook)
        if book is None:
            raise Conflict(f"playbook {a.playbook!r} of action {a.id} is no longer loaded")
        return book

    def _command(self, book: Playbook, argv: list[str], values: dict[str, Any]) -> list[str]:
        folder = str(book.path.parent) if book.path else str(self.config.playbooks_dir.resolve())
        return params.render(argv, values, {"python": sys.executable, "playbooks": folder})

    def _env(self, a: Action) -> dict[str, str]:
        """The scripts' environment: ours, plus where to act and on whose behalf."""
        env = {**os.environ, "AIOPS_EXECUTOR__TARGET": self.config.target, "AIOPS_ACTION_ID": a.id,
               "AIOPS_INCIDENT_ID": a.incident_id}  # fmt: skip
        if self.config.sim_control_url:
            env["AIOPS_EXECUTOR__SIM_CONTROL_URL"] = self.config.sim_control_url
        return env

    def _changed(self, a: Action) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(a)
        except Exception:
            log.exception("on_change failed for action %s", a.id)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
