"""The one redaction function: secret-looking values and URL credentials never leave the process."""

from __future__ import annotations

import re
from typing import Any

_SECRET_NAME = re.compile(r"(auth|key|token|secret|password|cookie)", re.I)


_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


def redact(obj: Any) -> Any:
    """Copy of obj with values under secret-looking names replaced (headers, extra_body) and
    credentials inside URLs (https://user:pass@host) dropped."""
    if isinstance(obj, dict):
        return {k: ("[REDACTED]" if isinstance(k, str) and _SECRET_NAME.search(k) and k != "api_key_env"
                    and isinstance(v, str) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str) and "@" in obj:
        return _URL_USERINFO.sub(r"\g<scheme>", obj)
    return obj


class Redactor:
    """Removes a secret's bytes from any text before it is logged, stored or raised."""

    def __init__(self, *secrets: str):
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "[REDACTED]")
        return text
