"""What about an incident is worth telling a channel again.

An incident is republished whenever its anomalies or scores move, which is far too often for a
channel. Only a few transitions change what a person should do: it resolved or reopened, its
severity moved, the top root cause changed, a playbook was proposed, decided, run or verified, a
forecast breached or was averted. :func:`state` keeps just those facts; :func:`changes` names the
ones that differ, as the short phrases shown on the message ("resolved", "top root cause now db").
"""

from __future__ import annotations

from typing import Any

from aiops.act.model import Action
from aiops.correlate.contract import Incident

State = dict[str, Any]


def state(incident: Incident, action: Action | None) -> State:
    """The facts of ``incident`` (and its action) whose change is worth a message."""
    return {
        "status": incident.status,
        "severity": incident.severity,
        "top": incident.root_causes[0].service if incident.root_causes else None,
        "forecast": incident.forecast.outcome if incident.forecast else None,
        "action": None if action is None else {
            "id": action.id, "playbook": action.playbook, "status": action.status,
            "approvals": [d.who for d in action.approvals], "verification": action.verification,
        },
    }  # fmt: skip


def changes(before: State | None, after: State) -> list[str]:
    """Phrases for each meaningful difference; empty for a first message or a cosmetic change."""
    if before is None:
        return []
    out: list[str] = []
    if before["status"] != after["status"]:
        out.append("resolved" if after["status"] == "resolved" else "reopened")
    if before["severity"] != after["severity"]:
        out.append(f"severity {before['severity']} → {after['severity']}")
    if after["top"] and before["top"] != after["top"]:
        out.append(f"top root cause now {after['top']}")
    if after["forecast"] != before["forecast"] and after["forecast"] in ("breached", "averted"):
        out.append(f"forecast {after['forecast']}")
    old, new = before["action"], after["action"]
    if new is not None:
        if old is None or old["id"] != new["id"]:
            old = None
            out.append(f"playbook {new['playbook']} {new['status']}")
        elif old["status"] != new["status"]:
            out.append(f"playbook {new['playbook']} {new['status']}")
        if old is not None and new["approvals"] != old["approvals"] and new["status"] == "proposed":
            out.append(f"approved by {', '.join(new['approvals'])}")
        if old is not None and old["verification"] != new["verification"]:
            out.append(f"verification {new['verification']}")
    return out


def merge(earlier: list[str], later: list[str]) -> list[str]:
    """Changes of a coalesced message: both lists, in order, without repeats."""
    return list(dict.fromkeys([*earlier, *later]))
