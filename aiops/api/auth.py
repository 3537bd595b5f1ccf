"""Bearer tokens with roles, from configuration; who is asking, and may they.

``api_tokens`` maps a token to ``"role"`` or ``"role:name"`` (the name is what the audit log
records; without one, the role and the token's first four characters). Roles are ordered:
an approver may do what an expert may, an expert what a viewer may. Tokens are compared in
constant time; a failed attempt is audited and counted, never explained beyond "missing" or
"invalid", so the API does not help anyone guess.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

ROLES = ("viewer", "expert", "approver")


class Unauthorized(Exception):
    """No usable credentials (HTTP 401)."""


@dataclass(frozen=True)
class Principal:
    who: str
    role: str

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class TokenTable:
    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens: list[tuple[bytes, Principal]] = []
        for token, spec in tokens.items():
            role, _, name = spec.partition(":")
            if role not in ROLES:
                raise ValueError(f"api token {token[:4]}…: role {role!r} is not one of {', '.join(ROLES)}")
            self._tokens.append((token.encode(), Principal(name or f"{role}-{token[:4]}", role)))

    def principal(self, authorization: str | None) -> Principal:
        """The caller behind an ``Authorization: Bearer …`` header, or :class:`Unauthorized`."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("missing bearer token")
        given = authorization[7:].strip().encode()
        found = None
        for token, principal in self._tokens:  # every token compared: timing says nothing
            if hmac.compare_digest(token, given):
                found = principal
        if found is None:
            raise Unauthorized("invalid token")
        return found
