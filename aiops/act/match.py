"""Which playbook an incident calls for, and the parameter values the incident itself supplies.

An incident does not know the fault injected behind it, so its *kinds* are read from evidence:
``bad_release`` when the root-cause service was deployed during the incident, and the SLO kind
(``latency``, ``errors``, ``saturation``) of each anomalous series of the root-cause service,
classified by the default SLO rules (so CPU and memory, and therefore a memory leak, read as
``saturation``); a predicted incident adds its forecast series' kind. The correlator's
``suggested_playbook`` is the strongest signal: playbooks that list it come first, then those that
match a kind, each group in file-name order.
"""

from __future__ import annotations

from collections.abc import Callable

from aiops.act.playbooks import Playbook, Source
from aiops.correlate.contract import Incident
from aiops.forecast.slo import SloPolicy

_SLOS = SloPolicy()
_RULES = _SLOS.all_rules()
PreviousVersion = Callable[[str, str], "str | None"]


def root_service(incident: Incident) -> str | None:
    if incident.root_causes:
        return incident.root_causes[0].service
    return incident.forecast.service if incident.forecast else None


def kinds(incident: Incident) -> set[str]:
    """The fault kinds the incident's evidence shows on its root-cause service."""
    service = root_service(incident)
    found = {"bad_release"} if any(c.service == service for c in incident.changes) else set()
    series = [a.series for a in incident.anomalies if a.service == service]
    series += [incident.forecast.series] if incident.forecast else []
    for s in series:
        i = _SLOS.resolve(s)
        if i >= 0 and _RULES[i].kind != "other":
            found.add(_RULES[i].kind)
    return found


def candidates(playbooks: list[Playbook], incident: Incident) -> list[tuple[Playbook, str]]:
    """Playbooks that apply to ``incident``, best first, each with why."""
    service = root_service(incident)
    if service is None or incident.status != "open":
        return []
    found = kinds(incident)
    ranked: list[tuple[int, Playbook, str]] = []
    for book in playbooks:
        rule = book.applies
        if not book.matches_service(service):
            continue
        if rule.bad_release is not None and rule.bad_release != ("bad_release" in found):
            continue
        if incident.suggested_playbook and incident.suggested_playbook in rule.suggested:
            ranked.append((0, book, f"the incident suggests {incident.suggested_playbook} for {service}"))
        elif shared := found & set(rule.kinds):
            ranked.append((1, book, f"{service} shows {', '.join(sorted(shared))}"))
    return [(book, why) for _, book, why in sorted(ranked, key=lambda r: r[0])]


def sources(incident: Incident, previous_version: PreviousVersion | None) -> dict[Source, str | None]:
    """Values a parameter's ``from:`` may name; None where the incident does not supply one."""
    service = root_service(incident)
    deploys = [c for c in incident.changes if c.service == service]
    version = deploys[-1].version if deploys else None
    previous = None
    if version is not None and service is not None:
        previous = previous_version(service, version) if previous_version else None
        if previous is None and len(deploys) > 1:  # the incident saw the deploy before the bad one
            previous = deploys[-2].version
    return {"incident.id": incident.id, "incident.root_cause": service, "change.version": version,
            "change.previous_version": previous}  # fmt: skip
