"""Incident memory: which resolved incidents look like this one, and what fixed them.

An incident's signature is its top root-cause service and the metric families of its top
indicators. Similarity is half "same root-cause service" and half the Jaccard overlap of the
families, so a repeat of the same fault on the same service scores near 1 and the same symptom
elsewhere about 0.5. What fixed an incident is a playbook whose run succeeded and verified.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiops.learn.weights import family

MIN_SIMILARITY = 0.5


def signature(incident: dict[str, Any]) -> tuple[str | None, set[str]]:
    causes = incident.get("root_causes") or []
    if not causes:
        return None, set()
    return causes[0]["service"], {family(s) for s in causes[0]["indicators"]}


def similarity(a: dict[str, Any], b: dict[str, Any]) -> float:
    (sa, fa), (sb, fb) = signature(a), signature(b)
    same = 0.5 if sa is not None and sa == sb else 0.0
    union = fa | fb
    return same + (0.5 * len(fa & fb) / len(union) if union else 0.0)


def similar(incident: dict[str, Any], resolved: list[dict[str, Any]], fixed_by: Callable[[str], list[str]],
            truth: Callable[[str], str | None], k: int = 3) -> list[dict[str, Any]]:  # fmt: skip
    """The ``k`` most similar resolved incidents, with their confirmed root cause and what fixed them."""
    scored = [(similarity(incident, r), r) for r in resolved if r["id"] != incident["id"]]
    scored = sorted((t for t in scored if t[0] >= MIN_SIMILARITY), key=lambda t: (-t[0], -t[1]["opened_at_unix_nano"]))
    return [
        {"id": r["id"], "similarity": round(score, 3), "opened_at_unix_nano": r["opened_at_unix_nano"],
         "root_cause": truth(r["id"]) or signature(r)[0], "fixed_by": fixed_by(r["id"])}
        for score, r in scored[:k]
    ]  # fmt: skip


def preferred_playbook(similar_incidents: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(playbook, why) when similar incidents were fixed by a playbook: the most often successful one."""
    counts: dict[str, list[str]] = {}
    for s in similar_incidents:
        for playbook in s["fixed_by"]:
            counts.setdefault(playbook, []).append(s["id"])
    if not counts:
        return None
    playbook, ids = max(counts.items(), key=lambda kv: len(kv[1]))
    return playbook, f"{playbook} fixed {len(ids)} similar incident{'s' if len(ids) > 1 else ''} ({', '.join(ids)})"
