"""Slack Block Kit for incidents and storm digests: pure functions from records to a message.

A message is ``{"text": ..., "blocks": [...]}``: ``text`` is the fallback Slack shows in
notifications and screen readers, so it carries the essentials on its own. Times use Slack's
``<!date^…>`` token, shown in each reader's own time zone, with UTC as the fallback. Text is
escaped (``&``, ``<``, ``>``) and cut to Block Kit's limits, so a long reason or a stray ``<``
in a series name cannot get the whole message refused with ``invalid_blocks``.

Approve/Reject buttons appear only while the action is ``proposed``; their ``value`` is the
action id, which ``POST /slack/actions`` hands to the approval flow. Once decided, the buttons
give way to the outcome (who decided, exit code, verification).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiops.act.model import Action
from aiops.correlate.contract import Incident

Message = dict[str, Any]

_ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
_BARS = "▁▂▃▄▅▆▇█"
_TOP_CAUSES = 3
_TOP_INDICATORS = 3
_TOP_CHANGES = 3
_DIGEST_LINES = 25
_SECTION_MAX = 3000  # Block Kit: section text
_HEADER_MAX = 150  # Block Kit: header plain_text


def incident_message(
    incident: Incident, action: Action | None, public_url: str, changed: Sequence[str] = ()
) -> Message:
    """The one message for ``incident``: summary, causes, forecast, changes, link, and the action."""
    link = f"{public_url.rstrip('/')}/incidents/{incident.id}"
    blocks: list[dict[str, Any]] = [_header(_title(incident)), _section(_summary(incident, link))]
    if incident.root_causes:
        blocks.append(_section(_causes(incident)))
    if incident.forecast is not None:
        blocks.append(_section(_forecast(incident)))
    if incident.changes:
        blocks.append(_section(_recent_changes(incident)))
    context = [f"<{link}|Open in dashboard>"]
    if spark := onsets_sparkline(incident):
        context.append(spark)
    if changed:
        context.append("Update: " + _esc("; ".join(changed)))
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    if action is not None:
        blocks.append(_section(_action(action)))
        if action.status == "proposed":
            blocks.append(_buttons(action))
    return {"text": _fallback(incident, action, changed), "blocks": blocks}


def digest_message(entries: list[dict[str, Any]], public_url: str) -> Message:
    """One message standing for incidents held back by the rate limit, so none vanishes unseen."""
    base = public_url.rstrip("/")
    lines = [f"• <{base}/incidents/{e['id']}|{_esc(e['id'])}> {e['severity']}: {_esc(', '.join(e['services']))}"
             for e in entries[:_DIGEST_LINES]]  # fmt: skip
    if len(entries) > _DIGEST_LINES:
        lines.append(f"…and {len(entries) - _DIGEST_LINES} more")
    title = f"{len(entries)} more incident{'s' if len(entries) != 1 else ''} (held back by the rate limit)"
    ids = ", ".join(f"{e['id']} ({', '.join(e['services'])})" for e in entries[:_DIGEST_LINES])
    return {
        "text": f"{title}: {ids}",
        "blocks": [
            _header(title),
            _section("\n".join(lines)),
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{base}/incidents|All incidents>"}]},
        ],
    }


def sparkline(values: list[float]) -> str:
    """Unicode bars scaled from 0 to the maximum (counts: an empty bucket is the lowest bar).

    >>> sparkline([0, 1, 2, 4])
    '▁▃▅█'
    """
    top = max(values, default=0) or 1
    return "".join(_BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1) + 0.5))] for v in values)


def onsets_sparkline(incident: Incident, buckets: int = 12) -> str | None:
    """How the incident unfolded: anomaly onsets per time slice since the first (None: too few to draw)."""
    onsets = sorted(a.first_seen_unix_nano for a in incident.anomalies)
    if len(onsets) < 3 or onsets[-1] == onsets[0]:
        return None
    span = onsets[-1] - onsets[0]
    counts = [0.0] * buckets
    for t in onsets:
        counts[min(buckets - 1, (t - onsets[0]) * buckets // span)] += 1
    return f"anomaly onsets over {_duration(span / 1e9)}: `{sparkline(counts)}`"


def _title(incident: Incident) -> str:
    icon = "✅" if incident.status == "resolved" else _ICON[incident.severity]
    return f"{icon} {incident.severity.upper()} · {incident.kind} · {incident.status} — {', '.join(incident.services)}"


def _summary(incident: Incident, link: str) -> str:
    services = ", ".join(f"`{_esc(s)}`" for s in incident.services) or "—"
    return (f"*<{link}|{_esc(incident.id)}>* · {len(incident.anomalies)} anomalies in {services} · "
            f"opened {_date(incident.opened_at_unix_nano)}")  # fmt: skip


def _causes(incident: Incident) -> str:
    lines = ["*Likely root causes*"]
    for i, c in enumerate(incident.root_causes[:_TOP_CAUSES], start=1):
        lines.append(f"{i}. *{_esc(c.service)}* ({c.score:.2f}) — {_esc(c.reason)}")
        if c.indicators:
            lines.append("      " + ", ".join(f"`{_esc(x)}`" for x in c.indicators[:_TOP_INDICATORS]))
    return "\n".join(lines)


def _forecast(incident: Incident) -> str:
    f = incident.forecast
    assert f is not None
    when = _date(f.expected_breach_unix_nano) if f.expected_breach_unix_nano else "not within the horizon"
    line = (f"*Forecast:* `{_esc(f.slo)}` on *{_esc(f.service)}* expected to break {when} "
            f"(p = {f.probability:.2f}, {_esc(f.model)})")  # fmt: skip
    if f.outcome != "pending":
        line += f" · *{f.outcome}*" + (f" {_date(f.outcome_at_unix_nano)}" if f.outcome_at_unix_nano else "")
    return line


def _recent_changes(incident: Incident) -> str:
    recent = sorted(incident.changes, key=lambda c: c.at_unix_nano, reverse=True)[:_TOP_CHANGES]
    return "*Recent changes:* " + "; ".join(
        f"*{_esc(c.service)}* → `{_esc(c.version)}` {_date(c.at_unix_nano)}" for c in recent
    )


def _action(action: Action) -> str:
    head = f"`{_esc(action.playbook)}` on *{_esc(action.service)}*" + (" (dry run)" if action.dry_run else "")
    approvals = ", ".join(_esc(d.who) for d in action.approvals)
    if action.status == "proposed":
        params = ", ".join(f"`{_esc(k)}={_esc(str(v))}`" for k, v in action.params.items()) or "none"
        return (f"*Proposed playbook:* {head} — {_esc(action.reason)}\nParameters: {params}\n"
                f"Approvals: {len(action.approvals)}/{action.required_approvals}"
                + (f" ({approvals})" if approvals else "") + f" · expires {_date(int(action.expires_at * 1e9))}")  # fmt: skip
    parts = [f"*Playbook* {head}: *{action.status}*"]
    if approvals:
        parts.append(f"approved by {approvals}")
    if rejected := [d for d in action.decisions if not d.approve]:
        parts.append("rejected by " + ", ".join(_esc(d.who) + (f" ({_esc(d.comment)})" if d.comment else "")
                                                 for d in rejected))  # fmt: skip
    if action.exit_code is not None:
        parts.append(f"exit code {action.exit_code}")
    if action.verification != "pending" or action.status in ("succeeded", "verified"):
        parts.append(f"verification {action.verification}")
    if action.reverted:
        parts.append("reverted")
    return " · ".join(parts)


def _buttons(action: Action) -> dict[str, Any]:
    confirm = {
        "title": {"type": "plain_text", "text": "Run this playbook?"},
        "text": {"type": "mrkdwn", "text": _esc(f"{action.playbook} on {action.service}")[:300]},
        "confirm": {"type": "plain_text", "text": "Approve"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }
    return {"type": "actions", "block_id": f"action:{action.id}"[:255], "elements": [
        {"type": "button", "action_id": "approve", "style": "primary", "value": action.id,
         "text": {"type": "plain_text", "text": "Approve"}, "confirm": confirm},
        {"type": "button", "action_id": "reject", "style": "danger", "value": action.id,
         "text": {"type": "plain_text", "text": "Reject"}},
    ]}  # fmt: skip


def _fallback(incident: Incident, action: Action | None, changed: Sequence[str]) -> str:
    text = f"[{incident.severity.upper()}] {incident.kind} incident {incident.id} ({incident.status}): {', '.join(incident.services)}"
    if incident.root_causes:
        top = incident.root_causes[0]
        text += f" — likely root cause {top.service}: {top.reason}"
    if action is not None:
        text += f" — playbook {action.playbook} " + (
            "awaiting approval" if action.status == "proposed" else action.status
        )
    if changed:
        text += f" (update: {'; '.join(changed)})"
    return text


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": _cut(text, _HEADER_MAX), "emoji": True}}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, _SECTION_MAX)}}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _date(unix_nano: int) -> str:
    secs = unix_nano // 1_000_000_000
    utc = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"<!date^{secs}^{{date_short_pretty}} {{time_secs}}|{utc}>"


def _duration(seconds: float) -> str:
    return (
        f"{seconds:.0f} s"
        if seconds < 120
        else f"{seconds / 60:.0f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )
