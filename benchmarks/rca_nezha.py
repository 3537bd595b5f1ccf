"""Nezha root-cause benchmark: AS@1/3/5 of the pipeline's ranking on 14 OB + 16 TT fault cases.

    python benchmarks/rca_nezha.py ../shared/data/rca/nezha [--no-topology] [--no-history]

Each case folder (``ob/<case>/``, ``tt/<case>/``: metrics.jsonl, traces.jsonl, logs.jsonl as
OTLP/JSON, plus truth.json) runs through a fresh embedded Pipeline in process (ReplaySource +
Pipeline, as ``aiops replay`` does). The call graph in truth.json (``edges``) is static
configuration, not a label: it is passed as ``topology=`` when the Pipeline takes one (off with
``--no-topology``). Dead letters are counted per case; any is a decoder or validator problem.

Scoring, on the latest version of each incident:

* **(a) end to end**: the *first* incident opened in ``[onset − 60 s, end + 5 min]``
  (``start_unix_nano``, ``end_unix_nano`` = start + 180 s). The 60 s lead admits the TT code
  faults whose logs change up to 49 s before the labelled start; incidents opened earlier belong
  to the earlier faults of the window (``other_faults``) and never count. No such incident: a miss.
* **(b) given the onset**: the Pipeline has no call that ranks a given set of anomalies, so a pure
  ranking score is not available. (b) is the nearest one can get through the public API: among
  the same incidents, the one whose anomalies are closest to the labelled onset (rather than the
  first to open). It differs from (a) only when several incidents open in the period. No such
  incident: still a miss (nothing was ranked).
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
    as_at_k,
    avg_at_k,
    emit,
    first_incident,
    latest_versions,
    median,
    naive_ranking,
    nearest_incident,
    pipeline_accepts_topology,
    rank_of,
    ranking,
    replay,
    report_dead_letters,
    short,
)

from aiops.detect.bank import BankConfig

SYSTEMS = ("ob", "tt")
LEAD_S = 60  # detection may precede the labelled start by this much (TT 2023-01-29 code faults)
AFTER_END_S = 300
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


def run_case(case_dir: Path, use_topology: bool, bank: dict[str, Any] | None) -> dict[str, Any]:
    truth = json.loads((case_dir / "truth.json").read_text(encoding="utf-8"))
    kwargs: dict[str, Any] = {"bank_config": BankConfig(**bank)} if bank else {}
    with tempfile.TemporaryDirectory(prefix="nezha-") as tmp:
        topology = None
        if use_topology and truth.get("edges"):
            topology = Path(tmp) / "topology.json"
            topology.write_text(json.dumps({"edges": truth["edges"], "nodes": truth.get("services", [])}), encoding="utf-8")
        run = replay([case_dir], topology=topology, **kwargs)
    incidents = latest_versions(run.incidents)
    onset, end = truth["start_unix_nano"], truth["end_unix_nano"]
    lo, hi = onset - LEAD_S * 10**9, end + AFTER_END_S * 10**9
    first = first_incident(incidents, lo, hi)
    nearest = nearest_incident(incidents, onset, lo, hi)
    root = truth["root_cause"]
    before = [i for i in incidents if i.opened_at_unix_nano < lo]
    # Did an incident that opened earlier (an earlier fault's) absorb anomalies of this one?
    absorbed = [i for i in before if any(lo <= a.first_seen_unix_nano <= hi for a in i.anomalies)]
    root_anoms = [a for a in first.anomalies if a.service == root] if first else []
    ranked_a, ranked_b, naive = ranking(first), ranking(nearest), naive_ranking(first)
    return {
        "case_id": case_dir.name,
        "system": case_dir.parent.name,
        "root_cause": root,
        "fault": truth.get("fault"),
        "other_faults": len(truth.get("other_faults", [])),
        "incidents": len(incidents),
        "before_onset": len(before),
        "absorbed_by_earlier": len(absorbed),
        "in_period": sum(1 for i in incidents if lo <= i.opened_at_unix_nano <= hi),
        "chosen": first.id if first else None,
        "ttd_s": (first.opened_at_unix_nano - onset) / 1e9 if first else None,
        "chosen_anomalies": len(first.anomalies) if first else 0,
        "chosen_series": sorted({a.series for a in first.anomalies})[:20] if first else [],
        "root_anomalous": bool(root_anoms),
        "ranking": ranked_a[:KEEP],
        "ranking_b": ranked_b[:KEEP],
        "naive": naive[:KEEP],
        "rank": rank_of(ranked_a, root),
        "rank_b": rank_of(ranked_b, root),
        "naive_rank": rank_of(naive, root),
        "top_reason": first.root_causes[0].reason if first and first.root_causes else None,
        "rejects": run.rejects,
        "reject_reasons": run.reject_reasons,
        "reject_example": run.reject_example,
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
    out[f"{prefix}dead_letters"] = sum(r["rejects"] for r in results)
    return out


def case_line(r: dict[str, Any]) -> str:
    head = f"{r['system']} {r['case_id']:48s} truth={short(r['root_cause'], 26):26s}"
    ctx = f"incidents={r['incidents']} before={r['before_onset']} absorbed={r['absorbed_by_earlier']}"
    if r["chosen"] is None:
        return f"{head} NO INCIDENT in [onset-60s, end+5min] ({ctx}; anomalies={r['stats']['anomalies']})"

    def p(x: int | None) -> str:
        return "-" if x is None else str(x)

    return (f"{head} rank={p(r['rank']):>2s} b={p(r['rank_b']):>2s} naive={p(r['naive_rank']):>2s} "
            f"#1={short(r['ranking'][0], 26):26s} ttd={r['ttd_s']:+.0f}s anoms={r['chosen_anomalies']} {ctx}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nezha_dir", type=Path)
    ap.add_argument("--no-topology", action="store_true", help="do not pass truth.json's call graph as static topology")
    ap.add_argument("--warmup", type=int, default=None, help="diagnostic: override the detector bank's warm-up (points)")
    ap.add_argument("--json", type=Path, default=None, help="write per-case results here")
    ap.add_argument("--no-history", action="store_true", help="print figures without appending to history.jsonl")
    args = ap.parse_args()

    t0 = time.perf_counter()
    dirs = case_dirs(args.nezha_dir)
    if not dirs:
        sys.exit(f"no cases (<system>/<case>/truth.json) under {args.nezha_dir}")
    bank = dataclasses.asdict(dataclasses.replace(BankConfig(), warmup=args.warmup)) if args.warmup is not None else None
    use_topology = not args.no_topology
    print(f"Nezha: {len(dirs)} cases; static topology "
          f"{'passed' if use_topology and pipeline_accepts_topology() else 'not passed'}", file=sys.stderr)  # fmt: skip
    results = []
    for d in dirs:
        r = run_case(d, use_topology, bank)
        results.append(r)
        print(case_line(r), file=sys.stderr, flush=True)

    misses = Counter((r["system"], r["root_cause"], r["ranking"][0] if r["ranking"] else "(no incident)")
                     for r in results if r["rank"] != 1)  # fmt: skip
    print("\nmissed at AS@1 (truth -> ranked first instead):", file=sys.stderr)
    for (system, truth, first), n in misses.most_common():
        print(f"  {n:2d}  {system} {truth:32s} -> {first}", file=sys.stderr)
    report_dead_letters(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")

    figures: dict[str, float | int] = {}
    for system in SYSTEMS:
        figures |= figures_for([r for r in results if r["system"] == system], f"{system}_")
    figures |= figures_for(results, "all_")
    figures["runtime_s"] = round(time.perf_counter() - t0, 1)
    config = {
        "window": f"first incident opened in [onset - {LEAD_S} s, end + {AFTER_END_S} s]",
        "b": "incident nearest the onset among the same (no rank-given-anomalies API)",
        "topology_passed": any(r["topology_passed"] for r in results),
        "bank": bank or BankConfig().to_json(),
    }
    emit("rca_nezha", config, "rca/nezha", data_hash(args.nezha_dir), figures, record=not args.no_history)


if __name__ == "__main__":
    main()
