"""Write a simulator run as a replay folder (the format ``aiops replay DIR`` reads).

``metrics.jsonl``, ``logs.jsonl`` and ``traces.jsonl`` hold one Kafka message payload per line,
each file in time order; ``truth.json`` lists the faults whose onset falls inside the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .simulator import Simulator

__all__ = ["write_replay"]

_FILES = {"metrics": "metrics.jsonl", "logs": "logs.jsonl", "spans": "traces.jsonl"}


def write_replay(sim: Simulator, out_dir: str | Path, duration_seconds: float) -> dict[str, Any]:
    """Run ``sim`` for ``duration_seconds`` of event time into ``out_dir``; return a summary.

    The summary has the message count per file, the covered time range and the truth records.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    begin = sim.now_unix_nano
    counts = {name: 0 for name in _FILES.values()}
    handles = {kind: open(out / name, "wb") for kind, name in _FILES.items()}
    try:
        for msg in sim.run(duration_seconds):
            handles[msg.kind].write(msg.payload + b"\n")
            counts[_FILES[msg.kind]] += 1
    finally:
        for h in handles.values():
            h.close()
    end = sim.now_unix_nano
    truth = [t for t in sim.truth if begin <= t["onset_unix_nano"] < end]
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return {"dir": str(out), "messages": counts, "start_unix_nano": begin,
            "end_unix_nano": end, "truth": truth}
