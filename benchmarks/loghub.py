"""Loghub-2k: grouping accuracy and speed of the template miner on 16 systems' logs.

    python benchmarks/loghub.py ../shared/data/loghub2k [--diagnose SYSTEM] [--no-history]

For each system the ``Content`` column of ``<Sys>_2k.log_structured.csv`` (the message after
Loghub's header split) goes, in file order, through a fresh :class:`TemplateMiner` with the
default :class:`MinerConfig`: one configuration for every system, nothing tuned per system.
The id that ``add`` returns for a line is its predicted group: what the pipeline would count.

Grouping accuracy (GA) is the one of Zhu et al., "Tools and Benchmarks for Automated Log
Parsing" (ICSE-SEIP 2019): a line is parsed correctly iff the set of lines in its predicted group
equals the set of lines in its ground-truth group; GA is the share of such lines. Ground truth:
``EventId`` of the standard labels; also, where present, the corrected label sets of Khan et al.
(ICSE'22, ``corrected_khan_icse22/``) and of Loghub-2.0 (ISSTA'24, ``corrected_loghub2.0/``,
14 systems), grouped by ``EventTemplate`` (Khan merges templates but keeps their EventIds);
each is fed its own file's ``Content`` (the Khan Mac file differs in three lines).

Speed: all 16 systems' content through ``add`` (a fresh miner per system), one core, best of 3;
``lines_per_s`` is total lines over total time. The data is free for research use only (see the
data folder's LICENSE notes); nothing of it is copied into this repository.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from _history import report  # noqa: E402

from aiops.detect.templates import MinerConfig, TemplateMiner  # noqa: E402

SYSTEMS = ("Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux", "Mac", "OpenSSH",
           "OpenStack", "Proxifier", "Spark", "Thunderbird", "Windows", "Zookeeper")  # fmt: skip
LABEL_SETS = {  # name -> (file under <Sys>/, ground-truth column)
    "standard": ("{s}_2k.log_structured.csv", "EventId"),
    "khan": ("corrected_khan_icse22/{s}_2k.log_structured_corrected.csv", "EventTemplate"),
    "loghub2": ("corrected_loghub2.0/{s}_2k.log_structured_corrected.csv", "EventTemplate"),
}


def read_labels(path: Path, column: str) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["Content"] for r in rows], [r[column] for r in rows]


def grouping_accuracy(predicted: list[str], truth: list[str]) -> float:
    """Share of lines whose predicted group has exactly the lines of their true group."""
    true_size = Counter(truth)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(predicted):
        groups[p].append(i)
    correct = 0
    for members in groups.values():
        labels = {truth[i] for i in members}
        if len(labels) == 1 and true_size[truth[members[0]]] == len(members):
            correct += len(members)
    return correct / len(truth) if truth else 0.0


def parse(lines: list[str], config: MinerConfig) -> list[str]:
    miner = TemplateMiner(config)
    return [m.template_id for m in miner.add_batch(lines)]


def diagnose(system: str, lines: list[str], truth: list[str], config: MinerConfig, limit: int = 40) -> None:
    """Print the wrongly grouped lines of one system: split true groups and mixed predicted groups."""
    miner = TemplateMiner(config)
    matches = [miner.add(x) for x in lines]
    pred = [m.template_id for m in matches]
    final = {tid: tpl for tid, tpl, _ in miner.templates()}
    by_true: dict[str, set[str]] = defaultdict(set)
    by_pred: dict[str, set[str]] = defaultdict(set)
    for p, t in zip(pred, truth):
        by_true[t].add(p)
        by_pred[p].add(t)
    shown = 0
    print(f"== {system}: {len(by_pred)} predicted groups, {len(by_true)} true groups")
    for t, ps in sorted(by_true.items(), key=lambda kv: -sum(truth.count(kv[0]) for _ in (0,))):
        if len(ps) == 1 and len(by_pred[next(iter(ps))]) == 1:
            continue
        n = truth.count(t)
        print(f"-- true {t} ({n} lines) -> {len(ps)} predicted")
        for p in sorted(ps):
            ex = next(i for i in range(len(lines)) if pred[i] == p and truth[i] == t)
            mixed = sorted(by_pred[p] - {t})
            print(f"   {sum(1 for i in range(len(lines)) if pred[i] == p and truth[i] == t):5d} {final.get(p, '?')[:150]}"
                  f"{'  [also ' + ','.join(mixed[:5]) + ']' if mixed else ''}")  # fmt: skip
            print(f"         e.g. {lines[ex][:150]}")
        shown += 1
        if shown >= limit:
            break


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--diagnose", metavar="SYSTEM", help="print the wrongly grouped lines of one system and stop")
    ap.add_argument("--labels", default="standard", choices=sorted(LABEL_SETS), help="label set for --diagnose")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-history", action="store_true", help="print figures without appending to history.jsonl")
    args = ap.parse_args()
    config = MinerConfig()
    if args.diagnose:
        name, column = LABEL_SETS[args.labels]
        lines, truth = read_labels(args.data_dir / args.diagnose / name.format(s=args.diagnose), column)
        diagnose(args.diagnose, lines, truth, config)
        return

    h = hashlib.sha256()
    figures: dict[str, float] = {}
    standard_lines: dict[str, list[str]] = {}
    for label_set, (name, column) in LABEL_SETS.items():
        scores = {}
        for s in SYSTEMS:
            path = args.data_dir / s / name.format(s=s)
            if not path.exists():
                continue
            h.update(path.relative_to(args.data_dir).as_posix().encode())
            h.update(path.read_bytes())
            lines, truth = read_labels(path, column)
            if label_set == "standard":
                standard_lines[s] = lines
            scores[s] = grouping_accuracy(parse(lines, config), truth)
        if not scores:
            continue
        print(f"{label_set} labels ({len(scores)} systems):", file=sys.stderr)
        for s, ga in scores.items():
            print(f"  {s:12s} {ga:.4f}", file=sys.stderr)
            figures[f"ga_{label_set}_{s}"] = round(ga, 4)
        figures[f"ga_{label_set}_avg"] = round(sum(scores.values()) / len(scores), 4)

    total = sum(len(x) for x in standard_lines.values())
    best = float("inf")
    for _ in range(args.repeats):
        spent = 0.0
        for lines in standard_lines.values():
            miner = TemplateMiner(config)
            add = miner.add
            t0 = time.perf_counter()
            for x in lines:
                add(x)
            spent += time.perf_counter() - t0
        best = min(best, spent)
    best_batch = float("inf")
    for _ in range(args.repeats):
        spent = 0.0
        for lines in standard_lines.values():
            miner = TemplateMiner(config)
            t0 = time.perf_counter()
            miner.add_batch(lines)
            spent += time.perf_counter() - t0
        best_batch = min(best_batch, spent)
    figures["lines"] = total
    figures["lines_per_s"] = round(total / best)
    figures["lines_per_s_batch"] = round(total / best_batch)
    out = {k: v for k, v in figures.items() if not k.startswith("ga_") or k.endswith("_avg")}
    out.update({k: v for k, v in figures.items() if k.startswith("ga_standard_")})
    if args.no_history:
        for k, v in out.items():
            print(f"{k}: {v}")
    else:
        report("loghub", config.to_json(), "loghub2k (16 systems, 2k lines each)", h.hexdigest()[:12], out)


if __name__ == "__main__":
    main()
