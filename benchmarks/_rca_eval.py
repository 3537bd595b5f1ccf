"""Shared scoring for the root-cause benchmarks (``rca_petshop.py``, ``rca_nezha.py``).

Everything here works on the public incident contract (:class:`aiops.correlate.contract.Incident`,
shared/DESIGN.md "Incident output"), so it scores whatever ranking the pipeline produces:

* :func:`latest_versions`: an incident is re-published whenever its root causes change; the last
  version of each id is the one to score.
* :func:`nearest_incident` / :func:`first_incident`: which incident answers a labelled case.
* :func:`ranking` (the pipeline's ``root_causes``, best first) and :func:`naive_ranking` (services
  by their largest anomaly score in the incident: the baseline any RCA must beat);
  :func:`ranking_given` ranks all anomalies of a labelled period together (ranking alone,
  without the correlator's grouping or the choice of incident).
* :func:`rank_of`, :func:`ac_at_k`, :func:`as_at_k`, :func:`avg_at_k`: the usual RCA figures.
  AC@k (RCD/CIRCA/RCAEval) is, per case, ``|top-k ∩ truth| / min(k, |truth|)`` averaged over cases;
  AS@k (Nezha) is the fraction of cases whose root cause is within the top k; with one root cause
  per case (PetShop, Nezha) both are the same number. Avg@5 is the mean of AC@1..AC@5.
  A case without an incident has an empty ranking: a miss at every k.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiops.correlate.contract import Incident
from aiops.detect.episodes import Anomaly
from aiops.ingest.deadletter import MemoryDeadLetter
from aiops.ingest.records import Message
from aiops.ingest.replay import ReplaySource
from aiops.pipeline import Pipeline

Truth = str | Iterable[str]


@dataclass
class Run:
    """What one replay of a case produced."""

    incidents: list[Incident]  # every published version, in publication order
    stats: dict[str, Any]
    rejects: int
    reject_reasons: dict[str, int]
    reject_example: str | None  # one dead letter (reason and raw record, cut), for the report
    seconds: float
    topology_passed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    anomalies: list[Anomaly] = field(default_factory=list)  # every anomaly opened, in order
    pipeline: Pipeline | None = None  # after the run: for ranking a chosen set of anomalies
    duplicates: int = 0  # messages dropped by ``dedupe``


def pipeline_accepts_topology() -> bool:
    """True once the Pipeline constructor takes a static topology file (``topology=``)."""
    return "topology" in inspect.signature(Pipeline).parameters


class CrossSourceDedupe:
    """Drops a message whose exact bytes another source already delivered.

    Recorded cases cut from one continuous recording overlap in time, and each case file repeats
    the messages of the overlap byte for byte; merged into one feed they must be delivered once.
    Repeats inside one source are kept: only the recording itself can say they are distinct.
    """

    def __init__(self) -> None:
        self._first: dict[bytes, str] = {}
        self.dropped = 0

    def __call__(self, batch: list[Message]) -> list[Message]:
        out = []
        for msg in batch:
            digest = hashlib.blake2b(bytes(msg.payload), digest_size=16).digest()
            source = self._first.setdefault(digest, msg.source)
            if source == msg.source:
                out.append(msg)
            else:
                self.dropped += 1
        return out


def replay(paths: Sequence[str | Path], topology: str | Path | None = None, batch_size: int = 256,
           dedupe: bool = False, **pipeline_kwargs: Any) -> Run:
    """Run files/folders through a fresh embedded Pipeline, as ``aiops replay`` does, in process.

    ``topology`` is passed as ``topology=Path`` only when the Pipeline accepts that parameter.
    ``dedupe`` (:class:`CrossSourceDedupe`) is for several overlapping cases replayed as one feed.
    """
    published: list[Incident] = []
    anomalies: list[Anomaly] = []
    dead = MemoryDeadLetter()
    kwargs = dict(pipeline_kwargs)
    passed = topology is not None and pipeline_accepts_topology()
    if passed:
        kwargs["topology"] = Path(topology)  # type: ignore[arg-type]
    pipeline = Pipeline(dead, published.append, on_anomaly=anomalies.append, **kwargs)
    drop = CrossSourceDedupe()
    t0 = time.perf_counter()
    for batch in ReplaySource(list(paths), None, batch_size).batches():
        pipeline.process(drop(batch) if dedupe else batch)
    pipeline.flush()
    seconds = time.perf_counter() - t0
    st = pipeline.stats
    example = None
    if dead.rejects:
        r = dead.rejects[0]
        example = f"{r.source}:{r.offset} {r.reason} | {bytes(r.raw)[:300]!r}"
    return Run(published, st.summary(), st.rejects, dict(st.reasons), example, seconds, passed,
               anomalies=anomalies, pipeline=pipeline, duplicates=drop.dropped)


def load_incidents(path: str | Path) -> list[Incident]:
    """Incidents from a JSONL file (``aiops replay --out``), in file order."""
    with Path(path).open(encoding="utf-8") as fh:
        return [Incident.model_validate(json.loads(line)) for line in fh if line.strip()]


def latest_versions(stream: Iterable[Incident]) -> list[Incident]:
    """The newest version of each incident id, ordered by opening time (then id).

    "Newest" is the largest ``updated_at_unix_nano``; among equal times, the later one in the
    stream (so a ``resolved`` record published at the same event time wins over ``open``).
    """
    best: dict[str, tuple[int, int, Incident]] = {}
    for pos, inc in enumerate(stream):
        key = (inc.updated_at_unix_nano, pos)
        if inc.id not in best or key >= best[inc.id][:2]:
            best[inc.id] = (*key, inc)
    return sorted((v[2] for v in best.values()), key=lambda i: (i.opened_at_unix_nano, i.id))


def ranking(inc: Incident | None) -> list[str]:
    """The pipeline's root-cause services, best first (duplicates dropped); [] for no incident."""
    if inc is None:
        return []
    return list(dict.fromkeys(rc.service for rc in inc.root_causes))


def naive_ranking(inc: Incident | None) -> list[str]:
    """Baseline: services by their largest anomaly score in the incident (ties: earlier onset, name)."""
    if inc is None:
        return []
    top: dict[str, tuple[float, int]] = {}
    for a in inc.anomalies:
        score, first = top.get(a.service, (float("-inf"), a.first_seen_unix_nano))
        top[a.service] = (max(score, a.score), min(first, a.first_seen_unix_nano))
    return sorted(top, key=lambda s: (-top[s][0], top[s][1], s))


def ranking_given(run: Run, lo_ns: int, hi_ns: int) -> list[str]:
    """Ranking given the onset: every anomaly the run opened with onset in ``[lo_ns, hi_ns]``, ranked
    together by the run's pipeline (its graph and changes at the end of the run), however the
    correlator grouped them. [] when none: nothing to rank."""
    chosen = [a for a in run.anomalies if lo_ns <= a.first_seen <= hi_ns]
    if run.pipeline is None or not chosen:
        return []
    return list(dict.fromkeys(rc.service for rc in run.pipeline.rank(chosen)))


def _anomaly_distance(inc: Incident, target_ns: int) -> int:
    if not inc.anomalies:
        return abs(inc.opened_at_unix_nano - target_ns)
    return min(abs(a.first_seen_unix_nano - target_ns) for a in inc.anomalies)


def opened_between(incidents: Iterable[Incident], lo_ns: int, hi_ns: int) -> list[Incident]:
    """Incidents opened in ``[lo_ns, hi_ns]`` (event time), by opening time."""
    return sorted((i for i in incidents if lo_ns <= i.opened_at_unix_nano <= hi_ns),
                  key=lambda i: (i.opened_at_unix_nano, i.id))  # fmt: skip


def first_incident(incidents: Iterable[Incident], lo_ns: int, hi_ns: int) -> Incident | None:
    """The first incident opened in ``[lo_ns, hi_ns]``, or None."""
    found = opened_between(incidents, lo_ns, hi_ns)
    return found[0] if found else None


def nearest_incident(incidents: Iterable[Incident], target_ns: int, lo_ns: int, hi_ns: int) -> Incident | None:
    """Among incidents opened in ``[lo_ns, hi_ns]``, the one with an anomaly closest to ``target_ns``.

    Ties go to more anomalies, then the earlier opening. None if no incident opened in the window.
    """
    found = opened_between(incidents, lo_ns, hi_ns)
    if not found:
        return None
    return min(found, key=lambda i: (_anomaly_distance(i, target_ns), -len(i.anomalies), i.opened_at_unix_nano, i.id))


def case_result(run: Run, answer: Incident | None, ranked: list[str], ranked_b: list[str], root: Truth,
                keep: int = 10) -> dict[str, Any]:  # fmt: skip
    """What both harnesses report per case: rankings (a) and (b), the naive one, ranks, rejects."""
    naive = naive_ranking(answer)
    return {
        "ranking": ranked[:keep], "ranking_b": ranked_b[:keep], "naive": naive[:keep],
        "rank": rank_of(ranked, root), "rank_b": rank_of(ranked_b, root), "naive_rank": rank_of(naive, root),
        "top_reason": answer.root_causes[0].reason if answer and answer.root_causes else None,
        "rejects": run.rejects, "reject_reasons": run.reject_reasons, "reject_example": run.reject_example,
    }  # fmt: skip


def _truth_set(truth: Truth) -> set[str]:
    return {truth} if isinstance(truth, str) else set(truth)


def rank_of(ranked: Sequence[str], truth: Truth) -> int | None:
    """1-based position of the first true root cause in ``ranked``; None when absent."""
    want = _truth_set(truth)
    for pos, service in enumerate(ranked, start=1):
        if service in want:
            return pos
    return None


def ac_at_k(rankings: Sequence[Sequence[str]], truths: Sequence[Truth], k: int) -> float:
    """AC@k: mean over cases of |top-k ∩ truth| / min(k, |truth|). NaN for no cases."""
    if len(rankings) != len(truths):
        raise ValueError(f"{len(rankings)} rankings for {len(truths)} truths")
    if not rankings:
        return float("nan")
    total = 0.0
    for ranked, truth in zip(rankings, truths, strict=True):
        want = _truth_set(truth)
        if want:
            total += len(set(list(dict.fromkeys(ranked))[:k]) & want) / min(k, len(want))
    return total / len(rankings)


def as_at_k(rankings: Sequence[Sequence[str]], truths: Sequence[Truth], k: int) -> float:
    """AS@k (Nezha): fraction of cases with a true root cause within the top k. NaN for no cases."""
    if len(rankings) != len(truths):
        raise ValueError(f"{len(rankings)} rankings for {len(truths)} truths")
    if not rankings:
        return float("nan")
    hits = sum(1 for r, t in zip(rankings, truths, strict=True) if (p := rank_of(r, t)) is not None and p <= k)
    return hits / len(rankings)


def avg_at_k(rankings: Sequence[Sequence[str]], truths: Sequence[Truth], k: int = 5) -> float:
    """Avg@k: mean of AC@1..AC@k (Avg@5 by default)."""
    return sum(ac_at_k(rankings, truths, j) for j in range(1, k + 1)) / k


def median(values: Sequence[float]) -> float:
    """Median, NaN for an empty sequence (statistics.median raises instead)."""
    v = sorted(values)
    if not v:
        return float("nan")
    mid = len(v) // 2
    return float(v[mid]) if len(v) % 2 else (v[mid - 1] + v[mid]) / 2.0


def short(service: str, width: int = 28) -> str:
    """A service name cut for one-line tables (PetShop node names run to 60 characters)."""
    return service if len(service) <= width else service[: width - 1] + "…"


def emit(benchmark: str, config: dict, dataset: str, dataset_hash: str, figures: dict, record: bool = True) -> None:
    """Print the figures last (``name: value``); append them to history.jsonl unless ``record`` is False."""
    if record:
        # the benchmarks folder is on sys.path when a benchmark runs
        from _history import report

        report(benchmark, config, dataset, dataset_hash, figures)
        return
    for name, value in figures.items():
        print(f"{name}: {value:.6g}" if isinstance(value, float) else f"{name}: {value}")


def report_dead_letters(results: list[dict[str, Any]]) -> None:
    """Print refused records of a benchmark run (there should be none) with their reasons and one example."""
    rejects = sum(r["rejects"] for r in results)
    if rejects:
        reasons: Counter[str] = Counter()
        for r in results:
            reasons.update(r["reject_reasons"])
        example = next(r["reject_example"] for r in results if r["reject_example"])
        print(f"\nDEAD LETTERS: {rejects} ({dict(reasons)}); e.g. {example}", file=sys.stderr)
