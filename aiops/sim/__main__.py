"""``python -m aiops.sim OUT_DIR`` writes the default scenario as a replay folder; ``--kafka`` produces it.

``--fault SERVICE:KIND:START:DURATION[:MAGNITUDE[:RAMP]]`` (repeatable) replaces the default
fault schedule, e.g. ``--fault checkout:errors:3600:2400:0.08:1800`` for an error ratio that
grows to 8 % over 30 minutes, an hour in.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .faults import FaultSpec
from .kafka import produce
from .replay import write_replay
from .simulator import (
    DEFAULT_SCENARIO_SECONDS,
    DEFAULT_START_UNIX_NANO,
    Simulator,
    default_scenario,
)


def fault_arg(text: str) -> FaultSpec:
    """``SERVICE:KIND:START:DURATION[:MAGNITUDE[:RAMP]]`` → a :class:`FaultSpec` (seconds from the start)."""
    parts = text.split(":")
    if not 4 <= len(parts) <= 6:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SERVICE:KIND:START:DURATION[:MAGNITUDE[:RAMP]]")
    try:
        nums = [float(x) for x in parts[2:]]
        return FaultSpec(parts[0], parts[1], nums[0], nums[1], nums[2] if len(nums) > 2 else None,  # type: ignore[arg-type]
                         nums[3] if len(nums) > 3 else 0.0)  # fmt: skip
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from e


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, write the folder, print a one-line JSON summary."""
    p = argparse.ArgumentParser(prog="python -m aiops.sim",
                                description="Write a simulated system's telemetry as a replay "
                                            "folder (metrics/logs/traces.jsonl + truth.json).")
    p.add_argument("out_dir", nargs="?", help="replay folder to write (or use --kafka)")
    p.add_argument("--kafka", metavar="BOOTSTRAP", help="produce to otlp_metrics/otlp_logs/otlp_spans instead")
    p.add_argument("--speed", type=float, default=None,
                   help="with --kafka: simulated seconds per real second (default: as fast as possible)")
    p.add_argument("--by-service", action="store_true",
                   help="with --kafka: one message per service, keyed by service.name, for logs and spans too "
                        "(what aiops run --role detect needs)")
    p.add_argument("--duration", type=float, default=DEFAULT_SCENARIO_SECONDS,
                   help="simulated seconds (default: the whole default scenario)")
    p.add_argument("--services", type=int, default=8, help="monitored services (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step", type=float, default=10.0, help="seconds per step (default 10)")
    p.add_argument("--start-unix-nano", type=int, default=DEFAULT_START_UNIX_NANO,
                   help="event time of the start (default: a fixed instant, for reproducibility)")
    p.add_argument("--benign-deploys-per-hour", type=float, default=0.0)
    p.add_argument("--fault", type=fault_arg, action="append", metavar="SERVICE:KIND:START:DURATION[:MAG[:RAMP]]",
                   help="inject this fault instead of the default schedule (repeatable)")
    args = p.parse_args(argv)
    if (args.out_dir is None) == (args.kafka is None):
        p.error("give either OUT_DIR or --kafka BOOTSTRAP")
    if args.fault:
        sim = Simulator(args.services, args.seed, args.start_unix_nano, faults=args.fault, step_seconds=args.step,
                        benign_deploys_per_hour=args.benign_deploys_per_hour)  # fmt: skip
    else:
        sim = default_scenario(args.start_unix_nano, n_services=args.services, seed=args.seed,
                               step_seconds=args.step, benign_deploys_per_hour=args.benign_deploys_per_hour)
    t0 = time.perf_counter()
    if args.kafka:
        summary = produce(sim, args.kafka, args.duration, speed=args.speed, by_service=args.by_service)
    else:
        summary = write_replay(sim, args.out_dir, args.duration)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 3)
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
