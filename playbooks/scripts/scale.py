"""Scale a deployment to N replicas and wait for the rollout."""

from __future__ import annotations

import argparse

from _target import kubectl, sim, target

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--service", required=True)
p.add_argument("--replicas", type=int, required=True)
p.add_argument("--namespace", default="default")
p.add_argument("--wait-s", type=int, default=90)
a = p.parse_args()

if target() == "sim":
    sim("/scale", {"service": a.service, "replicas": a.replicas})
else:
    kubectl("--namespace", a.namespace, "scale", f"deployment/{a.service}", f"--replicas={a.replicas}")
    kubectl("--namespace", a.namespace, "rollout", "status", f"deployment/{a.service}", f"--timeout={a.wait_s}s")
