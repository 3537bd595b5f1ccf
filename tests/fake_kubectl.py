"""A stand-in ``kubectl`` executable that records its argument lists (a real process on PATH).

``get deployment/<name>`` answers with a container named after the deployment and an image tag,
as ``kubectl get -o jsonpath`` would; every other command succeeds silently, after
``FAKE_KUBECTL_SLEEP`` seconds if set (a change that takes a while, to be interrupted).
"""

from __future__ import annotations

import sys
from pathlib import Path

SCRIPT = """#!{python}
import json, os, sys
with open(os.environ["FAKE_KUBECTL_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if "get" in sys.argv:
    name = next(a.split("/", 1)[1] for a in sys.argv if a.startswith("deployment/"))
    print(f"{name} registry.local:5000/shop/{name}:1.3.0@sha256:0123abcd")
else:
    import time
    time.sleep(float(os.environ.get("FAKE_KUBECTL_SLEEP", "0")))
"""


def install(bin_dir: Path) -> Path:
    """Write ``bin_dir/kubectl``; put ``bin_dir`` first on PATH and FAKE_KUBECTL_LOG in the environment."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "kubectl"
    exe.write_text(SCRIPT.replace("{python}", sys.executable))
    exe.chmod(0o755)
    return exe
