"""Shared by every benchmark: print figures as ``name: value`` lines and append them to history.jsonl."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

HISTORY = Path(__file__).with_name("history.jsonl")


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def report(benchmark: str, config: dict[str, Any], dataset: str, dataset_hash: str, figures: dict[str, float]) -> None:
    """Print the figures last, one per line, and keep a traceable record of the run."""
    entry = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "benchmark": benchmark,
        "commit": _commit(),
        "config_hash": digest(config),
        "config": config,
        "dataset": dataset,
        "dataset_hash": dataset_hash,
        "figures": figures,
    }
    with HISTORY.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
    for name, value in figures.items():
        print(f"{name}: {value:.6g}" if isinstance(value, float) else f"{name}: {value}")
