"""The effective settings as plain data with every secret masked, for the configuration page.

Masking is by name, not by a list of today's fields, so a secret added to ``Settings`` later is
masked without anyone remembering this file: any key containing ``secret``, ``token``,
``password`` or ``webhook`` has its value masked (for a mapping such as ``api_tokens``, whose
*keys* are the tokens, the keys are masked and the roles kept). Credentials in URLs
(``scheme://user:pass@host``) are masked wherever they appear. A mask shows at most the last four
characters, and none of a short value, so the page helps recognise a token, never rebuild it.
Detection and SLO rules are shown as in force, the built-in defaults included.
"""

from __future__ import annotations

import re
from typing import Any

from aiops.config import Settings
from aiops.detect.policy import DEFAULT_RULES

SECRET_NAMES = re.compile(r"secret|token|password|webhook", re.IGNORECASE)
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def mask(value: str) -> str:
    """``***`` plus the last four characters when the value is long enough to keep them harmless.

    >>> mask("xoxb-1234567890-abcd"), mask("short")
    ('***abcd', '***')
    """
    return "***" + value[-4:] if len(value) >= 16 else "***"


def _masked(key: str, value: Any) -> Any:
    if SECRET_NAMES.search(key):
        if isinstance(value, dict):
            return {mask(str(k)): v for k, v in value.items()}
        return None if value is None else mask(str(value))
    if isinstance(value, dict):
        return {k: _masked(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(key, v) for v in value]
    if isinstance(value, str):
        return _USERINFO.sub("***@", value)
    return value


def masked_settings(settings: Settings) -> dict[str, Any]:
    """``settings`` as JSON-ready data, secrets masked, with the rules in force (defaults included)."""
    out = {k: _masked(k, v) for k, v in settings.model_dump(mode="json").items()}
    detection = settings.detection
    out["detection"]["effective_rules"] = [r.model_dump(mode="json") for r in
                                           [*detection.rules, *(DEFAULT_RULES if detection.use_default_rules else [])]]
    out["slos"]["effective_rules"] = [r.model_dump(mode="json") for r in settings.slos.all_rules()]
    return out
