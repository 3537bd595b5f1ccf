"""One PetShop issue as a replay folder: native JSON lines, a static call graph, the label.

    python benchmarks/petshop_loader.py PETSHOP_DIR CASE_ID OUT_DIR
    # e.g. CASE_ID = low_traffic/test/issue_3 (a row of PETSHOP_DIR/cases.csv)

Writes into ``OUT_DIR``:

* ``metrics.jsonl``: native metric lines (shared/DESIGN.md, "Wire formats"),
  ``{"ts": unix s, "service": node, "metric": "latency.p99", "value": v}``, in time order: the
  scenario's ``noissue/metrics.csv`` as history, then the issue's 5 rows. Metric names are
  ``<metric>.<statistic>`` with the statistic shortened: ``latency.avg|p50|p90|p95|p99``
  (seconds, as recorded), ``requests.sum`` (count per 5-min bucket), ``availability.avg``
  (percent). Empty and NaN cells are "no data" and are skipped.
* ``topology.json``: the call graph, ``{"edges": [[caller, callee], ...], "nodes": [...]}``
  (graph.csv: cell (row u, column v) = 1 means u calls v; ``nodes`` keeps isolated nodes), the
  static topology file ``aiops replay --topology`` reads.
* ``truth.json``: ``{"root_cause": node, "target": {...}, "onset_unix_nano": target time, ...}``
  plus the window and the history's time shift.

**History time shift.** The baseline was recorded months *after* the issues (low_traffic
baseline 2023-08-21..23, its issues 2023-04-18/19; high_traffic 2023-09-05..07 vs 2023-04-12/13).
Written as recorded, the issue rows would sit four months behind the stream's watermark and the
validator would refuse every one as late (and as out of order per series). So the history is moved
back by a whole number of days (keeping each row's time of day, which the detectors' hour-of-day
profile uses) to the latest position that ends at or after the issue's first row, and the history
rows at or after that first row are dropped: between 25 and 49 hours of history remain, ending
less than 5 minutes before the issue window. Issue rows keep their own timestamps, so the label's
target time stays valid. ``truth.json`` records the shift and how many rows were kept.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

SCENARIOS_WITH_BASELINE = ("low_traffic", "high_traffic")
STATISTIC = {"Average": "avg", "p50": "p50", "p90": "p90", "p95": "p95", "p99": "p99", "Sum": "sum"}
ROW_S = 300  # PetShop samples every 5 minutes
DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class Case:
    case_id: str  # "<scenario>/<split>/issue_<i>"
    scenario: str
    split: str
    issue: str
    root_cause: str
    target_node: str
    target_metric: str
    target_agg: str
    target_ts: float  # unix seconds
    command: str | None

    @property
    def path_parts(self) -> tuple[str, str, str]:
        return self.scenario, self.split, self.issue


@dataclass(slots=True)
class Table:
    """A PetShop metrics.csv: per column (node, metric name), rows of (unix s, values)."""

    columns: list[tuple[str, str]]
    ts: list[float]
    rows: list[list[float]]  # NaN where the cell is empty or NaN


def read_metrics(path: Path) -> Table:
    """Parse the 3-row column header (node, metric, statistic) and the data rows."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        nodes, metrics, stats = next(reader), next(reader), next(reader)
        index_row = next(reader)
        if nodes[0] != "microservice" or metrics[0] != "metric" or stats[0] != "statistic" or index_row[0] != "unix_timestamp":
            raise ValueError(f"{path}: not a PetShop metrics.csv (header rows microservice/metric/statistic/unix_timestamp)")
        columns = []
        for node, metric, stat in zip(nodes[1:], metrics[1:], stats[1:], strict=True):
            if stat not in STATISTIC:
                raise ValueError(f"{path}: unknown statistic {stat!r} for {node}/{metric}")
            columns.append((node, f"{metric}.{STATISTIC[stat]}"))
        ts: list[float] = []
        rows: list[list[float]] = []
        for row in reader:
            if not row:
                continue
            ts.append(float(row[0]))
            rows.append([float(c) if c.strip() else math.nan for c in row[1:]])
            if len(rows[-1]) != len(columns):
                raise ValueError(f"{path}: row at {row[0]} has {len(rows[-1])} cells for {len(columns)} columns")
    order = sorted(range(len(ts)), key=ts.__getitem__)
    return Table(columns, [ts[i] for i in order], [rows[i] for i in order])


def read_graph(path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """graph.csv adjacency matrix → (nodes, (caller, callee) edges)."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)[1:]
        edges = []
        for row in reader:
            if not row:
                continue
            caller = row[0]
            for callee, cell in zip(header, row[1:], strict=True):
                if cell.strip() and float(cell) != 0.0:
                    edges.append((caller, callee))
    return header, edges


def read_cases(petshop_dir: Path) -> list[Case]:
    """Every issue of the data set, from its folders (``cases.csv`` is a derived index; the
    target.json files are the labels), ordered by scenario, split and issue number."""
    cases = []
    for target in petshop_dir.glob("*/*/issue_*/target.json"):
        issue_dir = target.parent
        split_dir = issue_dir.parent
        scenario = split_dir.parent.name
        label = json.loads(target.read_text(encoding="utf-8"))
        t, rc = label["target"], label["root_cause"]
        command = (label.get("metadata") or {}).get("reproducibility", {}).get("command")
        cases.append(Case(f"{scenario}/{split_dir.name}/{issue_dir.name}", scenario, split_dir.name, issue_dir.name,
                          rc["node"], t["node"], t["metric"], t.get("agg", "Average"), float(t["timestamp"]), command))  # fmt: skip
    cases.sort(key=lambda c: (c.scenario, c.split, int(c.issue.rsplit("_", 1)[1])))
    return cases


def find_case(petshop_dir: Path, case_id: str) -> Case:
    for case in read_cases(petshop_dir):
        if case.case_id == case_id.strip("/"):
            return case
    raise KeyError(f"no PetShop issue {case_id!r} under {petshop_dir} (expected <scenario>/<split>/issue_<i>)")


def history_shift(history_ts: list[float], issue_start: float) -> float:
    """Whole days (usually negative) that put the history's end at or just after ``issue_start``."""
    return math.ceil((issue_start - history_ts[-1]) / DAY_S) * DAY_S


def _lines(table: Table, shift: float, until: float | None) -> tuple[list[bytes], int]:
    out: list[bytes] = []
    kept = 0
    for ts, row in zip(table.ts, table.rows, strict=True):
        t = ts + shift
        if until is not None and t >= until:
            continue
        kept += 1
        stamp = f"{t:.0f}" if t == int(t) else repr(t)
        for (node, metric), v in zip(table.columns, row, strict=True):
            if math.isfinite(v):
                out.append(b'{"ts":%s,"service":%s,"metric":"%s","value":%s}' % (
                    stamp.encode(), json.dumps(node).encode(), metric.encode(), repr(v).encode()))  # fmt: skip
    return out, kept


def build(petshop_dir: str | Path, case_id: str, out_dir: str | Path) -> dict:
    """Write ``metrics.jsonl``, ``topology.json`` and ``truth.json`` for one issue; return the truth."""
    petshop_dir, out_dir = Path(petshop_dir), Path(out_dir)
    case = find_case(petshop_dir, case_id)
    if case.scenario not in SCENARIOS_WITH_BASELINE:
        raise ValueError(f"{case.case_id}: scenario {case.scenario} has no normal baseline in this copy "
                         f"(its noissue/metrics.csv is missing; see the data README)")  # fmt: skip
    scenario_dir = petshop_dir / case.scenario
    issue = read_metrics(scenario_dir / case.split / case.issue / "metrics.csv")
    history = read_metrics(scenario_dir / "noissue" / "metrics.csv")
    start, end = issue.ts[0], issue.ts[-1]
    shift = history_shift(history.ts, start)
    hist_lines, hist_rows = _lines(history, shift, until=start)
    issue_lines, _ = _lines(issue, 0.0, until=None)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.jsonl").write_bytes(b"\n".join(hist_lines + issue_lines) + b"\n")
    nodes, edges = read_graph(scenario_dir / "graph.csv")
    topology = {"edges": [list(e) for e in edges], "nodes": nodes}
    (out_dir / "topology.json").write_text(json.dumps(topology, indent=1) + "\n", encoding="utf-8")
    truth = {
        "case_id": case.case_id,
        "scenario": case.scenario,
        "split": case.split,
        "root_cause": case.root_cause,
        "target": {"node": case.target_node, "metric": case.target_metric, "agg": case.target_agg,
                   "timestamp": case.target_ts},
        "onset_unix_nano": round(case.target_ts * 1e9),
        "window_start_unix_nano": round(start * 1e9),
        "window_end_unix_nano": round(end * 1e9),  # the last issue row
        "issue_rows": len(issue.ts),
        "history_rows": hist_rows,
        "history_shift_s": shift,
        "history_nodes_missing": sorted({n for n, _ in issue.columns} - {n for n, _ in history.columns}),
        "points": len(hist_lines) + len(issue_lines),
        "fault_command": case.command,
        "source": "amazon-science/petshop-root-cause-analysis dataset/ (CC-BY-4.0)",
    }  # fmt: skip
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("petshop_dir", type=Path)
    ap.add_argument("case_id", help="<scenario>/<split>/issue_<i>, e.g. low_traffic/test/issue_3")
    ap.add_argument("out_dir", type=Path)
    args = ap.parse_args()
    truth = build(args.petshop_dir, args.case_id, args.out_dir)
    print(f"{args.out_dir}: {truth['points']} points ({truth['history_rows']} history rows shifted "
          f"{truth['history_shift_s'] / DAY_S:+.0f} d, {truth['issue_rows']} issue rows); "
          f"root cause {truth['root_cause']}")  # fmt: skip


if __name__ == "__main__":
    main()
