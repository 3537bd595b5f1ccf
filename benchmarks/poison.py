"""Good-traffic throughput through the real ``aiops run`` with and without 10 k poison records.

Issue 8's reliability target: with 10,000 fuzzed records (tests/reliability/poison_records.py)
mixed into good traffic, good traffic's points/s must stay within 20 % of a clean run.

A real broker (tests/kafka_broker.py) gets two topic sets filled beforehand: the good feed alone
(tests/test_kafka_service.py's feed, longer) and the same feed with the poison spread through it.
Each run starts ``aiops run`` as a subprocess with a fresh group and data directory; the clock
runs from the service's "partitions assigned" log line to the moment the group's committed
offsets reach the end of every partition (polled every 50 ms; checkpoints every 0.2 s), so
interpreter start-up and the group join are not counted. Best of 3 runs per side, alternated.

    PYTHONPATH=. python benchmarks/poison.py [--minutes 160] [--poison 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).parent), str(ROOT / "tests"), str(ROOT / "tests" / "reliability")]

from _history import digest, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=160.0, help="simulated minutes of good traffic (5 services)")
    ap.add_argument("--poison", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    from kafka_broker import KafkaBroker
    from poison_records import interleave, poison
    from service_harness import _committed, _env, _reference, _start, _stop
    from test_kafka_service import _create, _feed, _sends
    from test_poison import produce_each

    feed = _feed(minutes=args.minutes)
    ref = _reference(feed)
    good_points = ref.stats.points
    with tempfile.TemporaryDirectory() as tmp, KafkaBroker(Path(tmp) / "kafka") as broker:
        sets = {}
        for name in ("clean", "poisoned"):
            prefix = f"bench-{name}"
            _create(broker, prefix, partitions=2)
            good, _ = _sends(prefix, feed, 2)
            sends = good
            if name == "poisoned":
                bad, _, _ = poison(prefix, feed, args.poison)
                sends = interleave(good, bad)
            ends: dict[str, int] = {}
            for topic, part, offset in produce_each(broker.bootstrap, sends):
                ends[f"{topic}/{part}"] = max(ends.get(f"{topic}/{part}", 0), offset + 1)
            sets[name] = (prefix, ends, len(sends))

        best = {name: float("inf") for name in sets}
        for run in range(args.runs):
            for name, (prefix, ends, _n) in sets.items():
                group = f"{prefix}-g{run}"
                data = Path(tmp) / f"{name}-{run}"
                log = Path(tmp) / f"{name}-{run}.log"
                env = _env(broker.bootstrap, prefix, data, AIOPS_KAFKA_GROUP=group, AIOPS_CHECKPOINT_INTERVAL_S="0.2")
                proc = _start(env, log)
                try:
                    t0 = _until(lambda lg=log: "partitions assigned" in lg.read_text(errors="replace"), proc, 0.01)
                    t1 = _until(lambda g=group, e=ends: _committed(broker.bootstrap, g) == e, proc, 0.05)
                finally:
                    _stop(proc, log)
                best[name] = min(best[name], t1 - t0)
                print(f"# run {run} {name}: {t1 - t0:.2f} s", file=sys.stderr)

    clean_pps, poisoned_pps = good_points / best["clean"], good_points / best["poisoned"]
    ratio = poisoned_pps / clean_pps
    config = {"minutes": args.minutes, "services": 5, "poison": args.poison, "runs": args.runs,
              "partitions": 2, "checkpoint_interval_s": 0.2}  # fmt: skip
    report("poison", config, "sim seed 7 + poison seed 20261127", digest(config), {
        "good_messages": sets["clean"][2],
        "good_points": good_points,
        "poison_records": args.poison,
        "clean_s": round(best["clean"], 3),
        "poisoned_s": round(best["poisoned"], 3),
        "clean_good_points_per_s": round(clean_pps, 1),
        "poisoned_good_points_per_s": round(poisoned_pps, 1),
        "poisoned_over_clean": round(ratio, 4),
        "within_20pct_target": int(ratio >= 0.8),
    })  # fmt: skip


def _until(cond, proc, poll: float, timeout: float = 600.0) -> float:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.perf_counter()
        if proc.poll() is not None:
            raise RuntimeError(f"aiops run exited with {proc.returncode}")
        time.sleep(poll)
    raise TimeoutError("timed out")


if __name__ == "__main__":
    main()
