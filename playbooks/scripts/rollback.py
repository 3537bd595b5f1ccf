"""Roll a deployment back to a given version: same image repository, that version's tag."""

from __future__ import annotations

import argparse
import re

from _target import kubectl, sim, target

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--service", required=True)
p.add_argument("--to", required=True, help="the version (image tag) to run")
p.add_argument("--namespace", default="default")
p.add_argument("--wait-s", type=int, default=90)
a = p.parse_args()

if target() == "sim":
    sim("/rollback", {"service": a.service, "version": a.to})
else:
    ns = ("--namespace", a.namespace)
    current = kubectl(*ns, "get", f"deployment/{a.service}", "--output=jsonpath="
                      "{.spec.template.spec.containers[0].name} {.spec.template.spec.containers[0].image}").split()
    if len(current) != 2:
        raise SystemExit(f"cannot read the container image of deployment/{a.service}: {current}")
    container, image = current
    # registry:5000/team/cart:1.3.0@sha256:... -> registry:5000/team/cart
    repository = re.sub(r"(:[^/:@]+)?(@.+)?$", "", image)
    kubectl(*ns, "set", "image", f"deployment/{a.service}", f"{container}={repository}:{a.to}")
    kubectl(*ns, "rollout", "status", f"deployment/{a.service}", f"--timeout={a.wait_s}s")
