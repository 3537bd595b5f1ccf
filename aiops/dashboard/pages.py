"""The dashboard's pages as HTML bodies, from plain data (store records, action dumps, views).

Each function takes what it shows and returns markup; fetching lives in :mod:`aiops.dashboard.routes`.
Approve/Reject are buttons the page script turns into ``POST /approvals/{id}`` with the bearer
token the person entered: the pages themselves carry no secret and change nothing.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from aiops.dashboard import evidence
from aiops.dashboard.markup import badge, esc, link, table, value, when, when_ns
from aiops.dashboard.svg import chart_svg, graph_svg
from aiops.dashboard.views import Change, DashboardViews


def decision_buttons(approval_id: str) -> str:
    return (f'<span class="decide"><button class="approve" data-decide="approve" data-approval="{esc(approval_id)}">'
            f'Approve</button><button class="reject" data-decide="reject" data-approval="{esc(approval_id)}">'
            'Reject</button></span>')  # fmt: skip


# --- incidents -----------------------------------------------------------------------------------


def _forecast_cell(f: dict[str, Any] | None) -> str:
    if not f:
        return '<span class="muted">—</span>'
    if f["outcome"] == "pending":
        at = f.get("expected_breach_unix_nano") or f.get("earliest_breach_unix_nano")
        return esc(f"{f['slo']}: breach {'at ' + when_ns(at)[11:] if at else 'within horizon'} (p={f['probability']:.2f})")
    return esc(f"{f['slo']}: {f['outcome']}")


FAULT_KINDS = ("bad_release", "latency", "errors", "cpu", "memory_leak", "crash")


def inject_form(targets: list[str]) -> str:
    """The demo's "break something" form (sent by the page script to ``POST /demo/faults``)."""
    options = "".join(f'<option value="{esc(t)}">{esc(t)}</option>' for t in targets)
    kinds = "".join(f'<option value="{k}">{k.replace("_", " ")}</option>' for k in FAULT_KINDS)
    return ('<form id="inject" class="inject"><strong>Inject a fault:</strong> '
            f'<select name="service" aria-label="service">{options}</select> '
            f'<select name="kind" aria-label="fault">{kinds}</select> '
            '<input name="duration_s" type="number" min="30" max="7200" value="300" aria-label="seconds"> s '
            '<button type="submit">Inject</button></form>')  # fmt: skip


def incidents_page(records: list[dict[str, Any]], actions: list[dict[str, Any]], show: str,
                   fault_targets: list[str] | None = None) -> str:  # fmt: skip
    """Incidents, open first then newest, with their latest remediation (and, in the demo, a fault form)."""
    latest: dict[str, dict[str, Any]] = {}
    for a in sorted(actions, key=lambda a: a["proposed_at"]):
        latest[a["incident_id"]] = a
    rows = sorted(records, key=lambda r: (r["status"] != "open", -r["updated_at_unix_nano"]))
    if show == "open":
        rows = [r for r in rows if r["status"] == "open"]
    opened = sum(r["status"] == "open" for r in records)
    predicted = sum(r["status"] == "open" and r["kind"] == "predicted" for r in records)
    waiting = sum(a["status"] == "proposed" for a in actions)
    body = [(f'<h1>Incidents</h1><div class="cards"><div class="card"><b>{opened}</b>open</div>'
            f'<div class="card"><b>{predicted}</b>predicted</div><div class="card"><b>{waiting}</b>awaiting approval</div>'
            f'<div class="card"><b>{len(records)}</b>in total</div></div>'),
            '<p class="filter">Show: ' + " · ".join(link(f"/?show={s}", s, s == show) for s in ("all", "open")) + "</p>"]
    if fault_targets:
        body.append(inject_form(fault_targets))
    if not rows:
        body.append('<p class="muted">No incidents.</p>')
        return "".join(body)
    body.append('<table id="incidents"><thead><tr><th>incident</th><th>status</th><th>kind</th><th>severity</th>'
                "<th>services</th><th>top root cause</th><th>forecast</th><th>remediation</th><th>opened</th>"
                "<th>updated</th></tr></thead><tbody>")  # fmt: skip
    for r in rows:
        top = r["root_causes"][0] if r["root_causes"] else None
        cause = f'{esc(top["service"])} <small>({top["score"]:.2f})</small>' if top else "—"
        act = latest.get(r["id"])
        remedy = f'{esc(act["playbook"])} {badge(act["status"])}' if act else esc(r.get("suggested_playbook") or "—")
        body.append(
            f'<tr class="incident" data-id="{esc(r["id"])}" data-status="{esc(r["status"])}">'
            f'<td><a href="/ui/incidents/{esc(r["id"])}">{esc(r["id"])}</a></td>'
            f'<td>{badge(r["status"])}</td><td>{badge(r["kind"])}</td><td>{badge(r["severity"])}</td>'
            f'<td>{esc(", ".join(r["services"]))}</td>'
            f"<td>{cause}</td>"
            f'<td>{_forecast_cell(r.get("forecast"))}</td>'
            f"<td>{remedy}</td>"
            f'<td>{when_ns(r["opened_at_unix_nano"])}</td><td>{when_ns(r["updated_at_unix_nano"])}</td></tr>'
        )  # fmt: skip
    body.append("</tbody></table>")
    return "".join(body)


# --- one incident --------------------------------------------------------------------------------


def _charts(record: dict[str, Any], views: DashboardViews, changes: list[Change]) -> str:
    markers = [(c.at_unix_nano, f"{c.service} {c.version}") for c in changes]
    out = []
    for key in evidence.evidence_series(record):
        ts, values = views.series(key)
        out.append(chart_svg(key, ts, values, spans=evidence.spans(record, key, ts[-1] if ts else 0),
                             band=views.forecast(key), markers=markers, threshold=evidence.threshold(record, key)))  # fmt: skip
    return "".join(out) or '<p class="muted">No evidence series.</p>'


def _changes(record: dict[str, Any], views: DashboardViews) -> list[Change]:
    """The incident's own changes and any others of its services since an hour before it opened."""
    services = {*record["services"], *evidence.candidates(record)}
    start = record["opened_at_unix_nano"] - 3600 * 10**9
    found = views.changes(services, start, max(record["updated_at_unix_nano"], time.time_ns()))
    found += [Change(c["service"], c["version"], c["at_unix_nano"], "deployment") for c in record["changes"]]
    unique = {(c.service, c.version, c.at_unix_nano): c for c in found}
    return sorted(unique.values(), key=lambda c: c.at_unix_nano)


def action_section(a: dict[str, Any]) -> str:
    """A proposed (or past) remediation: parameters, approvals, outcome, and the buttons while it waits."""
    approvals = len({d["who"] for d in a["decisions"] if d["approve"] and d["params"] == a["params"]})
    head = (f'<div class="action" id="action-{esc(a["id"])}" data-status="{esc(a["status"])}">'
            f'<h3>{esc(a["playbook"])} on {esc(a["service"])} {badge(a["status"])}'
            f'{" " + badge("verified " + a["verification"], a["verification"]) if a["status"] == "succeeded" else ""}</h3>'
            f'<p>{esc(a["reason"])}</p>')  # fmt: skip
    facts = {"parameters": a["params"], "approvals": f"{approvals} of {a['required_approvals']}",
             "proposed": when(a["proposed_at"]), "expires": when(a["expires_at"])}  # fmt: skip
    if a["blocked"]:
        facts["blocked"] = a["blocked"]
    if a["started_at"]:
        facts |= {"started": when(a["started_at"]), "finished": when(a["finished_at"]), "exit code": a["exit_code"],
                  "command": " ".join(a["command"])}  # fmt: skip
    parts = [head, value(facts)]
    if a["decisions"]:
        parts.append(table([{"who": d["who"], "role": d["role"], "decision": "approve" if d["approve"] else "reject",
                             "at": when(d["at"]), "comment": d["comment"]} for d in a["decisions"]]))  # fmt: skip
    if a["stdout"] or a["stderr"]:
        parts.append(f'<details><summary>output</summary><pre>{esc(a["stdout"])}{esc(a["stderr"])}</pre></details>')
    if a["status"] == "proposed":
        parts.append(decision_buttons(a["id"]))
    return "".join(parts) + "</div>"


def incident_page(record: dict[str, Any], actions: list[dict[str, Any]], views: DashboardViews,
                  similar: list[dict[str, Any]]) -> str:  # fmt: skip
    changes = _changes(record, views)
    head = (f'<h1 id="incident" data-id="{esc(record["id"])}" data-status="{esc(record["status"])}">Incident '
            f'{esc(record["id"])} {badge(record["status"])} {badge(record["kind"])} {badge(record["severity"])}</h1>'
            f'<p>Services: {esc(", ".join(record["services"]))} · opened {when_ns(record["opened_at_unix_nano"])} · '
            f'updated {when_ns(record["updated_at_unix_nano"])}</p>')  # fmt: skip
    if record.get("forecast"):
        head += f'<p class="forecast">Forecast: {_forecast_cell(record["forecast"])}, model {esc(record["forecast"]["model"])}</p>'
    rcs = table([{"#": i + 1, "service": rc["service"], "score": rc["score"], "reason": rc["reason"],
                  "indicators": rc["indicators"]} for i, rc in enumerate(record["root_causes"])], cls="rootcauses")  # fmt: skip
    graph = graph_svg(views.graph(), evidence.candidates(record), record["services"], evidence.hot_edges(record))
    remediation = "".join(action_section(a) for a in sorted(actions, key=lambda a: a["proposed_at"]))
    if not remediation:
        suggestion = record.get("suggested_playbook")
        remediation = f'<p class="muted">No playbook proposed{" (suggested: " + esc(suggestion) + ")" if suggestion else ""}.</p>'
    timeline = table([{"at": when_ns(c.at_unix_nano), "service": c.service, "kind": c.kind, "version": c.version}
                      for c in changes])  # fmt: skip
    targets = ",".join([record["id"], *(a["id"] for a in actions)])
    return "".join([
        head,
        f'<section><h2>Root-cause candidates</h2>{rcs}</section>',
        ('<section><h2>Dependency graph</h2><p class="legend"><span class="key rc1"></span>#1 candidate '
        '<span class="key rc2"></span>other candidates <span class="key anom"></span>anomalous service '
        f'<span class="key hot"></span>anomalous call</p>{graph}</section>'),
        ('<section id="evidence"><h2>Evidence</h2><p class="legend"><span class="key span"></span>anomalous '
        '<span class="key band"></span>forecast interval <span class="key marker"></span>change</p>'
        f'{_charts(record, views, changes)}</section>'),
        f'<section><h2>Recent changes</h2>{timeline}</section>',
        f'<section id="remediation"><h2>Remediation</h2>{remediation}</section>',
        f'<section><h2>Similar resolved incidents</h2>{table(similar)}</section>' if similar else "",
        (f'<section><h2>Audit trail</h2><div id="audit" data-targets="{esc(targets)}">'
        '<p class="muted">The audit trail needs an expert or approver token (enter it above).</p></div></section>'),
    ])  # fmt: skip


# --- models, health, configuration ---------------------------------------------------------------


def models_page(models: list[dict[str, Any]] | None, pending: list[dict[str, Any]]) -> str:
    if models is None:
        return '<h1>Models</h1><p class="muted">Feedback learning is not running on this engine.</p>'
    parts = ["<h1>Models</h1>"]
    if pending:
        parts.append("<section><h2>Changes waiting for sign-off</h2>")
        parts += [f'<div class="action">{value(c)}{decision_buttons(str(c["id"]))}</div>' for c in pending]
        parts.append("</section>")
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in models:
        by_name[m["name"]].append(m)
    for name, versions in by_name.items():
        rows = [{"version": m["version"], "created": when(m["created_unix"]), "series": m["series_count"],
                 "change and its effect": m["change"]} for m in sorted(versions, key=lambda m: -m["version"])]  # fmt: skip
        parts.append(f"<section><h2>{esc(name)}</h2>{table(rows, cls='models')}</section>")
    if not models:
        parts.append('<p class="muted">No model versions saved yet.</p>')
    return "".join(parts)


HEADLINE_WORDS = ("rate", "lag", "bad_records", "series", "detector", "age", "stale")


def health_page(checks: dict[str, Any], figures: dict[str, float]) -> str:
    """Health checks, headline figures (rates, lag, bad records, detectors, model age), every figure.

    Figures are the API's snapshot, ``name`` or ``name|label=value``; headlines sum a name's labels.
    """
    totals: dict[str, float] = defaultdict(float)
    for key, v in figures.items():
        totals[key.split("|", 1)[0]] += v
    heads = {k: v for k, v in totals.items() if any(w in k for w in HEADLINE_WORDS)}
    ok = all(c.get("ok", True) for c in checks.values() if isinstance(c, dict))
    cards = "".join(f'<div class="card"><b>{esc(f"{v:,.4g}")}</b>{esc(k)}</div>' for k, v in heads.items())
    rows = [{"check": name, "ok": c.get("ok", True) if isinstance(c, dict) else None,
             "details": {k: v for k, v in c.items() if k != "ok"} if isinstance(c, dict) else c}
            for name, c in checks.items()]  # fmt: skip
    return (f'<h1>Health {badge("ok" if ok else "degraded")}</h1><div class="cards" id="headlines">{cards}</div>'
            f'<section><h2>Checks</h2>{table(rows)}</section>'
            f'<section><h2>Figures</h2>{table([{"figure": k, "value": v} for k, v in sorted(figures.items())])}</section>')


SECTIONS = (
    ("Sources", ("kafka_", "data_dir", "topology_file", "checkpoint_interval_s", "model_save_interval_s")),
    ("SLOs", ("slos",)), ("Detection", ("detection",)), ("Forecast", ("forecast",)),
    ("Remediation", ("executor",)), ("Notifications", ("notify", "slack_")), ("Feedback learning", ("learn",)),
    ("API and access", ("api_", "port")),
)  # fmt: skip


def config_page(config: dict[str, Any], playbooks: list[dict[str, Any]]) -> str:
    """The effective settings by topic (already masked by the views) and who may approve what."""
    if not config:
        return '<h1>Configuration</h1><p class="muted">No settings were handed to the dashboard.</p>'
    parts, left = ["<h1>Configuration</h1><p class=\"muted\">Effective values; secrets are masked.</p>"], dict(config)
    for title, prefixes in SECTIONS:
        mine = {k: left.pop(k) for k in list(left) if k.startswith(prefixes)}
        if mine:
            parts.append(f"<section><h2>{esc(title)}</h2>{value(mine)}</section>")
        if title == "Remediation":
            books = [{"playbook": b["name"], "approvers": b["approvers"], "required approvals": b["required_approvals"],
                      "applies": b["applies"], "parameters": b["parameters"], "command": " ".join(b["command"]),
                      "timeout s": b["timeout_s"]} for b in playbooks]  # fmt: skip
            parts.append(f'<section id="playbooks"><h2>Playbooks and approvers</h2>{table(books)}</section>')
    if left:
        parts.append(f"<section><h2>Other</h2>{value(left)}</section>")
    return "".join(parts)
