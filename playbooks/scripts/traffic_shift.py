"""Split a service's traffic between its stable and canary subsets (an Istio VirtualService)."""

from __future__ import annotations

import argparse
import json

from _target import kubectl, sim, target

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--service", required=True)
p.add_argument("--canary-weight", type=int, required=True, help="percent to the canary; the rest to stable")
p.add_argument("--namespace", default="default")
a = p.parse_args()

if target() == "sim":
    sim("/traffic", {"service": a.service, "canary_weight": a.canary_weight})
else:
    # Route 0 is stable, route 1 the canary; "test" ops make the patch fail instead of moving the wrong routes.
    patch = [
        {"op": "test", "path": "/spec/http/0/route/0/destination/subset", "value": "stable"},
        {"op": "test", "path": "/spec/http/0/route/1/destination/subset", "value": "canary"},
        {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 100 - a.canary_weight},
        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": a.canary_weight},
    ]
    kubectl("--namespace", a.namespace, "patch", f"virtualservice/{a.service}", "--type=json",
            f"--patch={json.dumps(patch)}")
