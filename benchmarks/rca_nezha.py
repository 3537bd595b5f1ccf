"""Nezha root-cause benchmark: AS@1/3/5 of the pipeline's ranking on 14 OB + 16 TT fault cases.

    python benchmarks/rca_nezha.py ../shared/data/rca/nezha [--mode both|case|stream] [--no-topology] [--no-history]

Two ways to feed the engine, both reported (``--mode``):

* ``case``: each case folder (``ob/<case>/``, ``tt/<case>/``: metrics.jsonl, traces.jsonl,
  logs.jsonl as OTLP/JSON, plus truth.json) runs through a fresh embedded Pipeline (ReplaySource
  + Pipeline, as ``aiops replay`` does): ~20 one-minute scrapes of history before the fault.
* ``stream`` (figures ``<system>_stream_*``): the engine as deployed, watching the system all
  day. All cases of one system and day are one feed through one Pipeline: ReplaySource merges
  their files in event time, and a message whose exact bytes another case's file already
  delivered is dropped (:class:`_rca_eval.CrossSourceDedupe`). The cases are cut from one
  recording, so the overlap of two windows holds byte-identical messages (checked: every
  cross-case repeat of (signal, time, service) is byte-identical); dropping by content needs no
  window bounds from truth.json, and keeps both cases' trace/log minutes, which never overlap.
  Between windows (gaps of up to ~1 h) the feed simply jumps. Each case is then scored on the
  day's incidents, exactly as in ``case`` mode.

The call graph in truth.json (``edges``; for a system-day, the union over its cases) is static
configuration, not a label: it is passed as ``topology=`` (off with ``--no-topology``). Labels
are read only to score, after the replay. Dead letters are counted per run; any is a decoder or
validator problem.

Scoring, on the latest version of each incident:

* **(a) end to end**: the *first* incident opened in ``[onset − 60 s, end + 5 min]``
  (``start_unix_nano``, ``end_unix_nano`` = start + 180 s). The 60 s lead admits the TT code
  faults whose logs change up to 49 s before the labelled start; incidents opened earlier belong
  to the earlier faults of the window (``other_faults``) and never count. No such incident: a miss.
* **(b) ranking given the onset** (``*_b_as*``): every anomaly the run opened with onset in
  ``[onset − 60 s, onset + 5 min]``, ranked together by ``Pipeline.rank`` (same ranker, graph and
  changes as the incidents), whatever the correlator grouped. No anomaly there: a miss.
* ``naive``: the (a) incident, services by their largest anomaly score.

Also: detection recall (cases with an (a) incident), median time to detect (open − onset; may
be negative down to −60 s), dead letters. AS@k = fraction of cases whose root cause is in the
top k; Avg@5 = mean of AS@1..AS@5.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _rca_eval import (
    Run,
    as_at_k,
    avg_at_k,
    case_result,
    emit,
    first_incident,
    latest_versions,
    median,
    pipeline_accepts_topology,
    ranking,
    ranking_given,
    replay,
    report_dead_letters,
    short,
)

from aiops.detect.bank import BankConfig

SYSTEMS = ("ob", "tt")
LEAD_S = 60  # detection may precede the labelled start by this much (TT 2023-01-29 code faults)
AFTER_END_S = 300
GIVEN_AFTER_S = 300  # (b): anomalies with onset up to this long after the labelled start
MODES = ("case", "stream")
KEEP = 10


def data_hash(nezha_dir: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(nezha_dir.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(nezha_dir).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def case_dirs(nezha_dir: Path) -> list[Path]:
    return sorted(p.parent for system in SYSTEMS for p in (nezha_dir / system).glob("*/truth.json"))


def load_truth(case_dir: Path) -> dict[str, Any]:
    return json.loads((case_dir / "truth.json").read_text(encoding="utf-8"))


def system_days(dirs: list[Path]) -> dict[tuple[str, str], list[Path]]:
    """Cases grouped by system and day (``<yyyymmdd>-...`` of the case id), each group in time order."""
    days: dict[tuple[str, str], list[Path]] = {}
    for d in sorted(dirs):
        days.setdefault((d.parent.name, d.name[:8]), []).append(d)
    return days


def replay_cases(dirs: list[Path], use_topology: bool, kwargs: dict[str, Any]) -> Run:
    """One Pipeline over ``dirs`` as one time-ordered feed (overlapping messages delivered once).

    The static topology is the union of the cases' call graphs (configuration, not labels).
    """
    truths = [load_truth(d) for d in dirs]
    edges = sorted({(str(a), str(b)) for t in truths for a, b in t.get("edges") or []})
    with tempfile.TemporaryDirectory(prefix="nezha-") as tmp:
        topology = None
        if use_topology and edges:
            nodes = sorted({s for t in truths for s in t.get("services", [])})
            topology = Path(tmp) / "topology.json"
            topology.write_text(json.dumps({"edges": edges, "nodes": nodes}), encoding="utf-8")
        return replay(dirs, topology=topology, dedupe=len(dirs) > 1, **kwargs)


def score_case(case_dir: Path, run: Run, mode: str) -> dict[str, Any]:
    """Score one labelled case against a run that covered it (alone, or in its system-day's feed)."""
    truth = load_truth(case_dir)
    incidents = latest_versions(run.incidents)
    onset, end = truth["start_unix_nano"], truth["end_unix_nano"]
    lo, hi = onset - LEAD_S * 10**9, end + AFTER_END_S * 10**9
    first = first_incident(incidents, lo, hi)
    root = truth["root_cause"]
    # Did an incident that opened earlier (an earlier fault's) absorb anomalies of this one?
    absorbed = [i for i in incidents if i.opened_at_unix_nano < lo
                and any(lo <= a.first_seen_unix_nano <= hi for a in i.anomalies)]  # fmt: skip
    ranked_b = ranking_given(run, lo, onset + GIVEN_AFTER_S * 10**9)
    return {
        "mode": mode,
        "case_id": case_dir.name,
        "system": case_dir.parent.name,
        "root_cause": root,
        "fault": truth.get("fault"),
        "other_faults": len(truth.get("other_faults", [])),
        "incidents": len(incidents),
        "absorbed_by_earlier": len(absorbed),
        "in_period": sum(1 for i in incidents if lo <= i.opened_at_unix_nano <= hi),
        "chosen": first.id if first else None,
        "ttd_s": (first.opened_at_unix_nano - onset) / 1e9 if first else None,
        "chosen_anomalies": len(first.anomalies) if first else 0,
        "chosen_series": sorted({a.series for a in first.anomalies})[:20] if first else [],
        "root_anomalous": any(a.service == root for a in first.anomalies) if first else False,
        "given_anomalies": sum(1 for a in run.anomalies if lo <= a.first_seen <= onset + GIVEN_AFTER_S * 10**9),
        **case_result(run, first, ranking(first), ranked_b, root, KEEP),
        "topology_passed": run.topology_passed,
        "stats": run.stats,
        "replay_s": run.seconds,
    }


def figures_for(results: list[dict[str, Any]], prefix: str) -> dict[str, float | int]:
    truths = [r["root_cause"] for r in results]
    out: dict[str, float | int] = {f"{prefix}cases": len(results)}
    for name, key in (("", "ranking"), ("b_", "ranking_b"), ("naive_", "naive")):
        rankings = [r[key] for r in results]
        for k in (1, 3, 5):
            out[f"{prefix}{name}as{k}"] = as_at_k(rankings, truths, k)
        if not name:
            out[f"{prefix}avg5"] = avg_at_k(rankings, truths, 5)
    detected = [r for r in results if r["chosen"] is not None]
    out[f"{prefix}detection_recall"] = len(detected) / len(results) if results else float("nan")
    out[f"{prefix}median_ttd_s"] = median([r["ttd_s"] for r in detected])
    return out


def case_line(r: dict[str, Any]) -> str:
    def p(x: int | None) -> str:
        return "-" if x is None else str(x)

    head = f"{r['mode']:6s} {r['system']} {r['case_id']:48s} truth={short(r['root_cause'], 22):22s}"
    ctx = f"in_period={r['in_period']} absorbed={r['absorbed_by_earlier']} given={r['given_anomalies']}"
    b = f"b={p(r['rank_b']):>2s} #1b={short(r['ranking_b'][0] if r['ranking_b'] else '-', 22):22s}"
    if r["chosen"] is None:
        return f"{head} NO INCIDENT   {b} ({ctx})"
    return (f"{head} rank={p(r['rank']):>2s} {b} naive={p(r['naive_rank']):>2s} "
            f"#1={short(r['ranking'][0], 22):22s} ttd={r['ttd_s']:+.0f}s anoms={r['chosen_anomalies']} {ctx}")  # fmt: skip


def run_mode(mode: str, dirs: list[Path], use_topology: bool, kwargs: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Run]]:
    """``case``: a fresh Pipeline per case. ``stream``: one Pipeline per system-day over all its cases."""
    groups = [[d] for d in dirs] if mode == "case" else list(system_days(dirs).values())
    results, runs = [], []
    for group in groups:
        run = replay_cases(group, use_topology, kwargs)
        runs.append(run)
        for d in group:
            results.append(score_case(d, run, mode))
            print(case_line(results[-1]), file=sys.stderr, flush=True)
    return results, runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nezha_dir", type=Path)
    ap.add_argument("--no-topology", action="store_true", help="do not pass truth.json's call graph as static topology")
    ap.add_argument("--warmup", type=int, default=None, help="diagnostic: override the detector bank's warm-up (points)")
    ap.add_argument("--mode", choices=("both", *MODES), default="both", help="isolated cases, one feed per system-day, or both")
    ap.add_argument("--json", type=Path, default=None, help="write per-case results here")
    ap.add_argument("--no-history", action="store_true", help="print figures without appending to history.jsonl")
    args = ap.parse_args()

    t0 = time.perf_counter()
    dirs = case_dirs(args.nezha_dir)
    if not dirs:
        sys.exit(f"no cases (<system>/<case>/truth.json) under {args.nezha_dir}")
    bank = dataclasses.asdict(dataclasses.replace(BankConfig(), warmup=args.warmup)) if args.warmup is not None else None
    kwargs: dict[str, Any] = {"bank_config": BankConfig(**bank)} if bank else {}
    use_topology = not args.no_topology
    print(f"Nezha: {len(dirs)} cases; static topology "
          f"{'passed' if use_topology and pipeline_accepts_topology() else 'not passed'}", file=sys.stderr)  # fmt: skip
    figures: dict[str, float | int] = {}
    everything = []
    for mode in MODES if args.mode == "both" else (args.mode,):
        results, runs = run_mode(mode, dirs, use_topology, kwargs)
        everything += results
        tag = "" if mode == "case" else f"{mode}_"
        misses = Counter((r["system"], r["root_cause"], r["ranking"][0] if r["ranking"] else "(no incident)")
                         for r in results if r["rank"] != 1)  # fmt: skip
        print(f"\n[{mode}] missed at AS@1 (truth -> ranked first instead):", file=sys.stderr)
        for (system, truth, first), n in misses.most_common():
            print(f"  {n:2d}  {system} {truth:32s} -> {first}", file=sys.stderr)
        report_dead_letters([{"rejects": r.rejects, "reject_reasons": r.reject_reasons, "reject_example": r.reject_example}
                             for r in runs])  # fmt: skip
        for system in SYSTEMS:
            figures |= figures_for([r for r in results if r["system"] == system], f"{system}_{tag}")
        figures |= figures_for(results, f"all_{tag}")
        figures[f"{tag}dead_letters"] = sum(r.rejects for r in runs)
        if mode == "stream":
            figures["stream_duplicates_dropped"] = sum(r.duplicates for r in runs)
        print(file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1), encoding="utf-8")
    figures["runtime_s"] = round(time.perf_counter() - t0, 1)
    config = {
        "window": f"first incident opened in [onset - {LEAD_S} s, end + {AFTER_END_S} s]",
        "b": f"all anomalies with onset in [onset - {LEAD_S} s, onset + {GIVEN_AFTER_S} s] ranked together (Pipeline.rank)",
        "modes": "case: fresh Pipeline per case; stream: one Pipeline per system-day, overlap delivered once",
        "topology_passed": any(r["topology_passed"] for r in everything),
        "bank": bank or BankConfig().to_json(),
    }
    emit("rca_nezha", config, "rca/nezha", data_hash(args.nezha_dir), figures, record=not args.no_history)


if __name__ == "__main__":
    main()
