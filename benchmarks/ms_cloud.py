"""Microsoft cloud monitoring data: stream all 60 labelled series through one detector bank, score events.

    python benchmarks/ms_cloud.py ../shared/data/ms_cloud_monitoring [--half-life 30]

One configuration (the bank's defaults) for the whole corpus; series stream in lockstep as one
bank (:func:`_series.stream`), each point scored before it is learned; labels are read only by
the scorer. Timestamps are the files' ``TimeStamp`` column (two formats occur,
``"2018-04-25T00:00:00Z"`` and ``2018-07-03 14:00:00``; both UTC to the second); blank values
are gaps, not points (their score is 0). Rows are kept as they are: the application-crash-rate
files repeat ~240 rows with the same timestamp, and labels belong to rows.

Scores are judged twice, raw and through :class:`aiops.detect.filters.OnsetFilter`, with
``event_scorer`` at its default tolerance (an alert counts for a true event from the event's
start to 7 points after its end):

* ``fixed``: the engine's own alarm line, score >= 0.5 (what an operator would be paged on);
* ``oracle``: the single global threshold that maximises corpus event F1, chosen *with the
  labels*: an upper bound for this score, not a result a deployment could reproduce. On this
  data it degenerates: alerting on every point (threshold 0, ``alert_rate`` 1) catches every
  event and leaves only the few label-free series as false positives, so event F1 ~0.99 says
  nothing about the detector (see ``event_scorer``'s caveat);
* ``oracle_composite``: the same oracle, maximising composite F1 (event recall with point
  precision) instead, which cannot be won by alerting everywhere.

Every setting reports event precision/recall/F1 and TP/FP/FN, plus ``point_precision``,
``composite_f1`` and ``alert_rate``: event precision alone counts a long alert run once.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _history import report  # noqa: E402
from _series import stream  # noqa: E402
from event_scorer import DEFAULT_DELAY, best_f1, f1_at, load_series, runs  # noqa: E402

from aiops.detect.bank import BankConfig  # noqa: E402

ALARM = 0.5
METRICS = ("precision", "recall", "f1", "tp", "fp", "fn", "point_precision", "composite_f1", "alert_rate", "threshold")


def data_hash(data_dir: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(Path(data_dir).rglob("*.csv")):
        h.update(path.relative_to(data_dir).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def per_category(scores: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> str:
    """Event TP/FP/FN and F1 at the alarm line per data directory (to stderr)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in scores:
        groups[name.split("/")[-2]].append(name)
    lines = [f"{'category':40s} {'series':>6s} {'TP':>4s} {'FP':>4s} {'FN':>4s} {'F1':>5s} {'alert%':>6s}"]
    for cat, names in sorted(groups.items()):
        r = f1_at({k: scores[k] for k in names}, {k: labels[k] for k in names}, ALARM)
        lines.append(f"{cat:40s} {len(names):6d} {r['tp']:4d} {r['fp']:4d} {r['fn']:4d} {r['f1']:5.2f} "
                     f"{100 * r['alert_rate']:6.2f}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--half-life", type=float, default=30.0, help="OnsetFilter half-life, points")
    args = ap.parse_args()
    config = BankConfig()
    t0 = time.perf_counter()
    data = load_series(args.data_dir)
    if not data:
        raise SystemExit(f"no *.csv below {args.data_dir}")
    names = sorted(data)
    series = [(data[n][0].astype("datetime64[ns]").astype(np.int64), data[n][1]) for n in names]
    t1 = time.perf_counter()
    raw, news = stream(series, config, args.half_life)
    t2 = time.perf_counter()
    labels = {n: data[n][2] for n in names}
    scored = {"raw": dict(zip(names, raw, strict=True)), "onset": dict(zip(names, news, strict=True))}
    points = sum(len(v) for _, v in series)
    finite = sum(int(np.isfinite(v).sum()) for _, v in series)
    figures: dict[str, float] = {
        "series": len(names),
        "points": points,
        "scored_points": finite,
        "true_events": sum(len(runs(lab == 1)) for lab in labels.values()),
        "load_s": t1 - t0,
        "stream_s": t2 - t1,
        "stream_points_per_s": finite / (t2 - t1),
    }
    for variant, scores in scored.items():
        results = {
            "fixed": f1_at(scores, labels, ALARM),
            "oracle": best_f1(scores, labels),
            "oracle_composite": best_f1(scores, labels, objective="composite_f1"),
        }
        for mode, r in results.items():
            for m in METRICS:
                v = r[m]
                figures[f"{variant}_{mode}_{m}"] = v if isinstance(v, int) else round(float(v), 4)
        print(f"--- {variant} scores, alert = score >= {ALARM} ---\n{per_category(scores, labels)}", file=sys.stderr)
    figures["total_s"] = time.perf_counter() - t0
    cfg = {**config.to_json(), "half_life": args.half_life, "delay": DEFAULT_DELAY, "alarm": ALARM}
    report("ms_cloud", cfg, f"Microsoft cloud monitoring ({len(names)} labelled series)", data_hash(args.data_dir),
           figures)  # fmt: skip


if __name__ == "__main__":
    main()
