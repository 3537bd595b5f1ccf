"""Loghub-2k: grouping accuracy and speed of the template miner on 16 systems' logs.

    python benchmarks/loghub.py ../shared/data/loghub2k [--diagnose SYSTEM [--labels khan]] [--no-history]

For each system the ``Content`` column of ``<Sys>_2k.log_structured.csv`` (the message after
Loghub's header split) goes, in file order, through a fresh :class:`TemplateMiner` with the
default :class:`MinerConfig`: one configuration for every system, nothing tuned per system.
The id that ``add`` returns for a line, at the time it is added, is the line's group: what the
pipeline counts (ids never change afterwards, so this is also the final grouping).

Grouping accuracy (GA) as defined by Zhu et al., "Tools and Benchmarks for Automated Log
Parsing" (ICSE-SEIP 2019): a line is parsed correctly iff the set of lines in its predicted group
equals the set of lines in its ground-truth group; GA is the share of such lines. Ground truth:
``EventId`` of the standard labels (the headline figure); also the corrected label sets of Khan
et al. (ICSE'22, ``corrected_khan_icse22/``, 16 systems) and of Loghub-2.0 (ISSTA'24,
``corrected_loghub2.0/``, 14 systems), grouped by ``EventTemplate`` (Khan merges some templates
but keeps their EventIds); each label set is fed its own file's ``Content``.

Speed, one process on one core, best of 3, all 16 systems (32,000 lines):
``lines_per_s`` is ``add`` line by line, a fresh miner per system (a cold start every 2,000
lines: the worst case, since most lines of a new system are new shapes); ``lines_per_s_batch``
the same through ``add_batch``; ``lines_per_s_warm`` a second pass of the same lines through the
same miners (steady state: every shape seen). Reading the CSV files is not timed.

The data is free for research use only (see the LICENSE notes beside it); nothing of it is
copied into this repository.
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
from _history import report

from aiops.detect.templates import MinerConfig, TemplateMiner

SYSTEMS = ("Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux", "Mac", "OpenSSH",
           "OpenStack", "Proxifier", "Spark", "Thunderbird", "Windows", "Zookeeper")  # fmt: skip
LABEL_SETS = {  # name -> (file under <Sys>/, ground-truth column)
    "standard": ("{s}_2k.log_structured.csv", "EventId"),
    "khan": ("corrected_khan_icse22/{s}_2k.log_structured_corrected.csv", "EventTemplate"),
    "loghub2": ("corrected_loghub2.0/{s}_2k.log_structured_corrected.csv", "EventTemplate"),
}


def read_labels(path: Path, column: str) -> tuple[list[str], list[str]]:
    """(Content, ground-truth group) of every line of one structured CSV file, in file order."""
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["Content"] for r in rows], [r[column] for r in rows]


def grouping_accuracy(predicted: list[str], truth: list[str]) -> float:
    """Share of lines whose predicted group holds exactly the lines of their true group."""
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
    """The template id of every line, a fresh miner fed in order."""
    miner = TemplateMiner(config)
    return [miner.add(x).template_id for x in lines]


def diagnose(system: str, lines: list[str], truth: list[str], config: MinerConfig, limit: int = 40) -> None:
    """Print the wrongly grouped lines of one system: true groups split, predicted groups mixed."""
    miner = TemplateMiner(config)
    pred = [miner.add(x).template_id for x in lines]
    final = {t.template_id: t.template for t in miner.templates()}
    pairs = Counter(zip(truth, pred))
    example = {}
    for i, tp in enumerate(zip(truth, pred)):
        example.setdefault(tp, i)
    by_true: dict[str, set[str]] = defaultdict(set)
    by_pred: dict[str, set[str]] = defaultdict(set)
    for t, p in pairs:
        by_true[t].add(p)
        by_pred[p].add(t)
    sizes = Counter(truth)
    wrong = [t for t, ps in by_true.items() if len(ps) > 1 or len(by_pred[next(iter(ps))]) > 1]
    print(f"== {system}: {len(by_pred)} predicted groups, {len(by_true)} true groups, "
          f"GA {grouping_accuracy(pred, truth):.4f}")  # fmt: skip
    for t in sorted(wrong, key=lambda t: -sizes[t])[:limit]:
        print(f"-- true {t} ({sizes[t]} lines) -> {len(by_true[t])} predicted")
        for p in sorted(by_true[t], key=lambda p: -pairs[t, p]):
            also = sorted(by_pred[p] - {t})
            note = f"  [also {', '.join(also[:5])}]" if also else ""
            print(f"   {pairs[t, p]:5d} {final.get(p, '?')[:150]}{note}")
            print(f"         e.g. {lines[example[t, p]][:150]}")


def timed(lines_by_system: dict[str, list[str]], config: MinerConfig, how: str, repeats: int) -> float:
    """Best total seconds over ``repeats`` for all systems, a fresh miner per system."""
    best = float("inf")
    for _ in range(repeats):
        spent = 0.0
        for lines in lines_by_system.values():
            miner = TemplateMiner(config)
            add, batch = miner.add, miner.add_batch
            if how == "warm":
                batch(lines)
            t0 = time.perf_counter()
            if how == "batch":
                batch(lines)
            else:
                for x in lines:
                    add(x)
            spent += time.perf_counter() - t0
        best = min(best, spent)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--diagnose", metavar="SYSTEM", help="print the wrongly grouped lines of one system and stop")
    ap.add_argument("--labels", default="standard", choices=sorted(LABEL_SETS), help="label set for --diagnose")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-history", action="store_true", help="print the figures without appending to history.jsonl")
    args = ap.parse_args()
    config = MinerConfig()
    if args.diagnose:
        name, column = LABEL_SETS[args.labels]
        lines, truth = read_labels(args.data_dir / args.diagnose / name.format(s=args.diagnose), column)
        diagnose(args.diagnose, lines, truth, config)
        return

    digest = hashlib.sha256()
    ga: dict[str, dict[str, float]] = {}
    standard_lines: dict[str, list[str]] = {}
    templates = events = 0
    for label_set, (name, column) in LABEL_SETS.items():
        for s in SYSTEMS:
            path = args.data_dir / s / name.format(s=s)
            if not path.exists():
                continue
            digest.update(path.relative_to(args.data_dir).as_posix().encode())
            digest.update(path.read_bytes())
            lines, truth = read_labels(path, column)
            predicted = parse(lines, config)
            ga.setdefault(label_set, {})[s] = grouping_accuracy(predicted, truth)
            if label_set == "standard":
                standard_lines[s] = lines
                templates += len(set(predicted))
                events += len(set(truth))
    if not standard_lines:
        sys.exit(f"no <System>/<System>_2k.log_structured.csv under {args.data_dir}")

    header = f"{'system':12s} " + " ".join(f"{k:>8s}" for k in ga)
    print(header, file=sys.stderr)
    for s in SYSTEMS:
        cells = " ".join(f"{ga[k][s]:8.4f}" if s in ga[k] else f"{'-':>8s}" for k in ga)
        print(f"{s:12s} {cells}", file=sys.stderr)
    print(f"{'average':12s} " + " ".join(f"{sum(v.values()) / len(v):8.4f}" for v in ga.values()), file=sys.stderr)

    total = sum(len(x) for x in standard_lines.values())
    figures: dict[str, float] = {f"ga_{k}_avg": round(sum(v.values()) / len(v), 4) for k, v in ga.items()}
    figures.update({
        "systems": len(standard_lines),
        "lines": total,
        "templates_mined": templates,
        "templates_true": events,
        "lines_per_s": round(total / timed(standard_lines, config, "add", args.repeats)),
        "lines_per_s_batch": round(total / timed(standard_lines, config, "batch", args.repeats)),
        "lines_per_s_warm": round(total / timed(standard_lines, config, "warm", args.repeats)),
    })  # fmt: skip
    figures.update({f"ga_standard_{s}": round(v, 4) for s, v in ga["standard"].items()})
    for label_set in ("khan", "loghub2"):
        figures.update({f"ga_{label_set}_{s}": round(v, 4) for s, v in ga.get(label_set, {}).items()})
    if args.no_history:
        for k, v in figures.items():
            print(f"{k}: {v}")
    else:
        report("loghub", config.to_json(), "loghub2k (16 systems x 2k lines; standard, Khan and Loghub-2.0 labels)",
               digest.hexdigest()[:12], figures)  # fmt: skip


if __name__ == "__main__":
    main()
