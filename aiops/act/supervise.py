"""The detached supervisor: one claimed run (or revert) carried out by a process of its own.

With ``executor.detached`` the executor starts ``python -m aiops.act.supervise`` in a new session
for each action it claims, and waits for it. The supervisor renews the action's lease while the
command runs and records the outcome in the ledger and the audit log through
:meth:`Executor.carry_out`, exactly as an in-process run does. So when the engine dies mid-run
the action is still settled once, and a standby engine on the same database sees a live lease
instead of a lapsed one to re-run. Exit status 0: settled; 3: not settled by this process (the
action was not in the state it was started for, or its lease lapsed and another worker took it).
"""

from __future__ import annotations

import argparse
import logging

from aiops.act.config import ExecutorConfig
from aiops.act.executor import Executor
from aiops.act.playbooks import load_playbooks
from aiops.store.sqlite import Store

log = logging.getLogger("aiops.act.supervise")
NOT_SETTLED = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aiops.act.supervise",
                                     description="Carry out one claimed playbook run or revert and record it.")
    parser.add_argument("--db", required=True, help="the SQLite database holding the actions ledger")
    parser.add_argument("--playbooks", required=True, help="the folder of the action's playbook file")
    parser.add_argument("--config", required=True, help="the executor: section as JSON")
    parser.add_argument("--action", required=True, help="the id of the claimed action")
    parser.add_argument("--mode", required=True, choices=["run", "revert"])
    parser.add_argument("--verifies", action="store_true", help="the engine verifies successful runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = Store(args.db)
    try:
        ex = Executor(store, load_playbooks(args.playbooks), ExecutorConfig.model_validate_json(args.config))
        action = ex.action(args.action)
        expected = "reverting" if args.mode == "revert" else "running"
        if action.status != expected:
            log.error("action %s is %s, not %s: nothing to %s", action.id, action.status, expected, args.mode)
            return NOT_SETTLED
        return 0 if ex.carry_out(action, verifies=args.verifies) is not None else NOT_SETTLED
    finally:
        store.close()


if __name__ == "__main__":
    raise SystemExit(main())
