"""Playbooks: what a remediation may do, declared in ``playbooks/*.yaml`` and checked at load time.

A playbook is data, not code: when it applies, the typed and bounded parameters a person may
approve, the argument list to run (never a shell string), its timeout, how recovery is verified
and how the change is undone. Everything is validated when the file is loaded, so a typo stops
startup with the file and the field named instead of surfacing at 3 a.m. during an incident.

    name: rollback
    applies: {suggested: [rollback], bad_release: true}
    parameters:
      service: {type: str, from: incident.root_cause}
      version: {type: str, from: change.previous_version}
    command: ["{python}", "{playbooks}/scripts/rollback.py", "--service", "{service}", "--to", "{version}"]
    timeout_s: 120
    verify: {within_s: 600}
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aiops.act.params import IDENT, PLACEHOLDER, coerce
from aiops.errors import ConfigError, InvalidRequest

# Placeholders the executor fills itself, never from a request: the interpreter running aiops (so
# Python scripts find the same environment) and the folder holding the playbook file.
BUILTINS = frozenset({"python", "playbooks"})
Source = Literal["incident.id", "incident.root_cause", "change.version", "change.previous_version"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Applies(_Strict):
    """When a playbook is proposed: any listed suggestion or fault kind, on a matching service."""

    suggested: list[str] = Field(default_factory=list, description="incident.suggested_playbook values")
    kinds: list[str] = Field(default_factory=list, description="fault kinds (see aiops.act.match)")
    services: str = Field(default="*", description="glob over the root-cause service")
    bad_release: bool | None = Field(default=None, description="true: only after a deploy of the service; false: never")


class Parameter(_Strict):
    type: Literal["int", "float", "str", "enum"]
    min: float | None = None
    max: float | None = None
    choices: list[str] | None = None
    pattern: str | None = None
    default: Any = None
    from_: Source | None = Field(default=None, alias="from", description="filled from the incident when proposed")
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Parameter:
        numeric = self.type in ("int", "float")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError("min/max apply to int and float parameters only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if (self.type == "enum") != bool(self.choices):
            raise ValueError("an enum parameter needs choices, and only an enum has them")
        if self.pattern is not None:
            if self.type != "str":
                raise ValueError("pattern applies to str parameters only")
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"pattern does not compile: {e}") from e
        return self


class Verify(_Strict):
    within_s: float = Field(default=600.0, gt=0, description="the SLO series must be back to normal by then")


class Playbook(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    description: str = ""
    applies: Applies = Field(default_factory=Applies)
    approvers: list[str] = Field(default_factory=lambda: ["approver"], min_length=1,
                                 description="roles or person names allowed to approve or reject")  # fmt: skip
    required_approvals: int = Field(default=1, ge=1)
    approval_ttl_s: float | None = Field(default=None, gt=0, description="overrides executor.approval_ttl_s")
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    command: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=120.0, gt=0, le=3600)
    idempotent: bool = Field(default=False, description="safe to run again after a crash mid-run")
    verify: Verify = Field(default_factory=Verify)
    revert: list[str] | None = Field(default=None, min_length=1, description="run when verification fails")
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("parameters")
    @classmethod
    def _names(cls, v: dict[str, Parameter]) -> dict[str, Parameter]:
        for name in v:
            if not re.fullmatch(IDENT, name) or name in BUILTINS:
                raise ValueError(f"parameter name {name!r} must be an identifier other than {sorted(BUILTINS)}")
        return v

    @model_validator(mode="after")
    def _placeholders(self) -> Playbook:
        for field, argv in (("command", self.command), ("revert", self.revert or [])):
            for arg in argv:
                unknown = set(PLACEHOLDER.findall(arg)) - BUILTINS - set(self.parameters)
                if unknown:
                    raise ValueError(f"{field} argument {arg!r} uses undeclared parameter(s) {sorted(unknown)}")
        return self

    def allows(self, who: str, role: str) -> bool:
        return who in self.approvers or role in self.approvers

    def matches_service(self, service: str) -> bool:
        return fnmatch.fnmatchcase(service, self.applies.services)


def load_playbooks(directory: Path) -> list[Playbook]:
    """Every ``*.yaml``/``*.yml`` in ``directory``, by file name; a ConfigError names file and field."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"playbooks directory {directory} does not exist (executor.playbooks_dir)")
    books: dict[str, Playbook] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read playbook: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a playbook is a mapping of fields")
        try:
            book = Playbook.model_validate({**raw, "path": path.resolve()})
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'playbook'}: {err['msg']}" for err in e.errors())
            raise ConfigError(f"{path}: {problems}") from e
        for name, spec in book.parameters.items():
            if spec.default is not None:
                try:
                    coerce(book.name, name, spec, spec.default)
                except InvalidRequest as e:
                    raise ConfigError(f"{path}: parameters.{name}.default: {e}") from e
        if book.name in books:
            raise ConfigError(f"{path}: playbook name {book.name!r} is already used by {books[book.name].path}")
        books[book.name] = book
    return list(books.values())
