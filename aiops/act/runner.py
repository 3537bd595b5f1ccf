"""Running one playbook command: an argument list, no shell, a deadline, bounded output.

The command starts in a session of its own, so a timeout kills its whole process group
(``kubectl`` children, a script's subprocesses), first with SIGTERM, then SIGKILL after a short
grace. Output is drained continuously (a full pipe would block the command) and only the last
``limit`` bytes of each stream are kept: the end of a log is where the error is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from aiops.act.model import Outcome

OUTPUT_LIMIT = 16_384
KILL_GRACE_S = 2.0


class _Tail:
    """Reads a pipe to its end in a thread, keeping the last ``limit`` bytes."""

    def __init__(self, pipe: IO[bytes], limit: int) -> None:
        self.pipe, self.limit, self.dropped, self.buf = pipe, limit, 0, bytearray()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for chunk in iter(lambda: self.pipe.read1(65536), b""):  # type: ignore[attr-defined]
            self.buf += chunk
            if len(self.buf) > 2 * self.limit:
                self.dropped += len(self.buf) - self.limit
                del self.buf[: len(self.buf) - self.limit]

    def text(self) -> str:
        self.thread.join(timeout=KILL_GRACE_S)
        self.pipe.close()
        extra = len(self.buf) - self.limit
        if extra > 0:
            self.dropped += extra
            del self.buf[:extra]
        head = f"[... {self.dropped} bytes dropped]\n" if self.dropped else ""
        return head + self.buf.decode("utf-8", errors="replace")


def run(
    argv: list[str],
    timeout_s: float,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    on_tick: Callable[[], None] | None = None,
    tick_s: float = 1.0,
    limit: int = OUTPUT_LIMIT,
) -> Outcome:
    """Run ``argv`` (shell=False) for at most ``timeout_s``; ``on_tick`` is called while it runs."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)  # fmt: skip
    except OSError as e:
        return Outcome(command=argv, stderr=f"cannot start {argv[0]!r}: {e}")
    out, err = _Tail(proc.stdout, limit), _Tail(proc.stderr, limit)  # type: ignore[arg-type]
    deadline = time.monotonic() + timeout_s
    timed_out = False
    while True:
        try:
            proc.wait(timeout=max(0.0, min(tick_s, deadline - time.monotonic())))
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                timed_out = True
                _kill_group(proc)
                break
            if on_tick is not None:
                on_tick()
    stdout, stderr = out.text(), err.text()
    if timed_out:
        stderr += f"\n[killed: no exit within the {timeout_s:g} s timeout]"
    return Outcome(command=argv, exit_code=None if timed_out else proc.returncode,
                   stdout=stdout, stderr=stderr, timed_out=timed_out)  # fmt: skip


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=KILL_GRACE_S)
            if sig == signal.SIGTERM:
                os.killpg(proc.pid, signal.SIGKILL)  # the rest of the group, if any lingers
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return
