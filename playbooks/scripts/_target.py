"""What the playbook scripts act on: a real cluster through ``kubectl``, or the demo simulator.

``AIOPS_EXECUTOR__TARGET`` picks it (``kubectl``, the default, or ``sim``); for ``sim``,
``AIOPS_EXECUTOR__SIM_CONTROL_URL`` is the simulator's control API. Standard library only, so the
scripts run wherever Python does. Every external command is an argument list (no shell) and is
echoed to stdout first, so the executor's audit log shows exactly what ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any


def target() -> str:
    name = os.environ.get("AIOPS_EXECUTOR__TARGET", "kubectl")
    if name not in ("kubectl", "sim"):
        sys.exit(f"AIOPS_EXECUTOR__TARGET must be 'kubectl' or 'sim', not {name!r}")
    return name


def kubectl(*args: str) -> str:
    """Run ``kubectl args...``; stop the script with kubectl's exit code when it fails."""
    argv = ["kubectl", *args]
    print("+ " + " ".join(argv), flush=True)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        sys.exit(done.returncode)
    return done.stdout


def sim(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body`` to the simulator's control API; stop the script on an error answer."""
    base = os.environ.get("AIOPS_EXECUTOR__SIM_CONTROL_URL")
    if not base:
        sys.exit("AIOPS_EXECUTOR__SIM_CONTROL_URL is not set (target 'sim')")
    print(f"+ POST {base}{path} {json.dumps(body)}", flush=True)
    req = urllib.request.Request(base.rstrip("/") + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        sys.exit(f"simulator refused: {e.code} {e.read().decode(errors='replace')}")
    except OSError as e:
        sys.exit(f"simulator unreachable at {base}: {e}")
    print(json.dumps(answer), flush=True)
    return answer
