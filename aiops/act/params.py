"""Parameter values: checked against their playbook's declaration, then put into an argument list.

Values come from incidents (service names seen in telemetry) and from people (REST, Slack), so
none is trusted. Numbers must be numbers within bounds, enums one of their choices, strings must
match the declared allow-list pattern *and* hold no shell metacharacter, whitespace or control
character and not start with ``-`` (which would turn a value into an option of the command). No
shell ever runs (the argument list goes to the process as is), so the metacharacter check is the
second of two walls: a pattern loosened by a playbook author still cannot let them through.
Substitution happens only after validation, and only into the positions the playbook declared.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiops.errors import InvalidRequest

if TYPE_CHECKING:
    from aiops.act.playbooks import Parameter, Playbook

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PLACEHOLDER = re.compile(r"\{(" + IDENT + r")\}")
SAFE_STR = r"^[A-Za-z0-9._:/-]{1,128}$"  # the default allow-list for string parameters
FORBIDDEN = frozenset(";|&$`<>\"'\\(){}*?!#~")
Value = int | float | str


def coerce(playbook: str, name: str, spec: Parameter, value: Any) -> Value:
    """``value`` as the declared type, or InvalidRequest saying what is wrong and what is allowed."""
    where = f"parameter {name!r} of playbook {playbook!r}"
    if spec.type in ("int", "float"):
        number = _number(value, integer=spec.type == "int")
        if number is None:
            raise InvalidRequest(f"{where} must be {'an integer' if spec.type == 'int' else 'a number'}, got {value!r}")
        if spec.min is not None and number < spec.min:
            raise InvalidRequest(f"{where} = {number} is below the minimum {spec.min:g}")
        if spec.max is not None and number > spec.max:
            raise InvalidRequest(f"{where} = {number} is above the maximum {spec.max:g}")
        return number
    if not isinstance(value, str):
        raise InvalidRequest(f"{where} must be a string, got {value!r}")
    if spec.type == "enum":
        if value not in (spec.choices or ()):
            raise InvalidRequest(f"{where} = {value!r} is not one of {spec.choices}")
        return value
    bad = sorted({c for c in value if c in FORBIDDEN or c.isspace() or not c.isprintable()})
    if bad:
        raise InvalidRequest(f"{where} = {value!r} contains forbidden character(s) {''.join(bad)!r} "
                             "(shell metacharacters, quotes, whitespace)")  # fmt: skip
    if value.startswith("-"):
        raise InvalidRequest(f"{where} = {value!r} may not start with '-' (it would read as an option)")
    pattern = spec.pattern or SAFE_STR
    if not re.fullmatch(pattern, value):
        raise InvalidRequest(f"{where} = {value!r} does not match {pattern}")
    return value


def _number(value: Any, integer: bool) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):  # form fields and Slack payloads carry text
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            return None
    if integer:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) else None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def validate(playbook: Playbook, values: Mapping[str, Any]) -> dict[str, Value]:
    """All of ``playbook``'s parameters, from ``values`` or their defaults, each checked."""
    unknown = sorted(set(values) - set(playbook.parameters))
    if unknown:
        raise InvalidRequest(f"playbook {playbook.name!r} has no parameter(s) {unknown}; "
                             f"it takes {sorted(playbook.parameters)}")  # fmt: skip
    out: dict[str, Value] = {}
    for name, spec in playbook.parameters.items():
        value = values.get(name, spec.default)
        if value is None:
            raise InvalidRequest(f"parameter {name!r} of playbook {playbook.name!r} has no value and no default")
        out[name] = coerce(playbook.name, name, spec, value)
    return out


def render(argv: list[str], params: Mapping[str, Value], builtins: Mapping[str, str]) -> list[str]:
    """``argv`` with each ``{name}`` replaced; ``params`` must already be validated."""
    values = {**{k: str(v) for k, v in params.items()}, **builtins}
    return [PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in argv]
