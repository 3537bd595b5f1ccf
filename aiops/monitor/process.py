"""The engine process's own CPU time and memory, from the kernel (no psutil)."""

from __future__ import annotations

import os
import resource
import sys

_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def memory() -> dict[str, float]:
    """Resident memory now (Linux ``/proc``; where absent, only the peak) and its peak, in bytes."""
    out = {"process_max_rss_bytes": float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_UNIT)}
    try:
        with open("/proc/self/statm", "rb") as fh:
            out["process_rss_bytes"] = float(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except OSError:
        pass
    return out
