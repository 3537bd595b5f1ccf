"""Verification that an action worked: the incident it was for is back to normal.

The correlator resolves an incident once its anomalous series (the SLO series among them) have
been quiet for its quiet period, so "resolved in the store" is "back to normal". Until then the
answer is "not yet known" (None), and the executor keeps polling until the playbook's
``verify.within_s`` runs out, which is when it counts as failed and the revert runs.
"""

from __future__ import annotations

from collections.abc import Callable

from aiops.act.model import Action
from aiops.store.sqlite import Store


def incident_resolved(store: Store) -> Callable[[Action], bool | None]:
    """``Executor(verify=incident_resolved(store))``: True once the action's incident is resolved."""

    def verify(action: Action) -> bool | None:
        record = store.incident(action.incident_id)
        return True if record is not None and record["status"] == "resolved" else None

    return verify
