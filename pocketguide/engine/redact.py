"""The one redaction module: a secret never leaves the process, in any form.

* `redact(obj)`: a copy of settings for a manifest — values under secret-looking keys replaced, URL
  credentials (https://user:pass@host) dropped.
* `register(*secrets)`: the process's secrets (API keys, URL passwords, secret headers). From then on
  `scrub(text)` / `scrub_bytes(data)` replace every form of each — raw, URL-encoded, JSON-escaped and
  base64 at any byte alignment (so inside a `Basic` header or any other base64 blob) — with [REDACTED].
  The store's writers, the response cache, the CLI's log handler and its error lines call them.
* `strip_credentials(url)`: the URL without its user:password, and what was removed.
* `SecretFilter`: a logging filter that scrubs every record a handler emits.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

MASK = "[REDACTED]"
MIN_SECRET = 4  # shorter values ("pw") would mask ordinary words; their user:pw pair is still registered
MIN_BASE64_CORE = 8  # a base64 fragment shorter than this could occur by chance

_SECRET_NAME = re.compile(r"(auth|key|token|secret|password|cookie)", re.I)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


def redact(obj: Any) -> Any:
    """Copy of obj with values under secret-looking names replaced (headers, extra_body) and
    credentials inside URLs (https://user:pass@host) dropped."""
    if isinstance(obj, dict):
        return {k: (MASK if isinstance(k, str) and _SECRET_NAME.search(k) and k != "api_key_env"
                    and isinstance(v, str) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return scrub(_URL_USERINFO.sub(r"\g<scheme>", obj) if "@" in obj else obj)
    return obj


def secret_values(mapping: dict[str, Any] | None) -> list[str]:
    """String values under secret-looking keys (extra_headers: Authorization, X-Api-Key…)."""
    return [v for k, v in (mapping or {}).items() if isinstance(v, str) and _SECRET_NAME.search(str(k))]


def strip_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(url without user:password@, user, password); the url unchanged when it carries none."""
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return url, None, None
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), parts.username, parts.password


# --- every form of a secret -------------------------------------------------------------------

def _base64_cores(data: bytes) -> set[str]:
    """The part of base64(x + data + y) that depends on data alone, for each of the 3 alignments of data
    (in the standard and the URL-safe alphabet): found inside any base64 blob that encodes the secret."""
    out = set()
    for offset in range(3):
        enc = base64.b64encode(b"\0" * offset + data).decode()
        core = enc[-(-8 * offset // 6): (8 * (offset + len(data))) // 6]
        if len(core) >= MIN_BASE64_CORE:
            out |= {core, core.replace("+", "-").replace("/", "_")}
    return out


def forms(secret: str) -> set[str]:
    """Every way `secret` can appear in text we write: raw, URL-encoded, JSON-escaped, base64."""
    raw = secret.encode("utf-8", "surrogatepass")
    found = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret),
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             base64.b64encode(raw).decode().rstrip("=")}
    found |= {f.lower() for f in found if "%" in f}  # %2f as well as %2F
    found |= _base64_cores(raw)
    return {f for f in found if len(f) >= MIN_SECRET}


class _Registry:
    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.text: re.Pattern[str] | None = None
        self.data: re.Pattern[bytes] | None = None
        self.lock = threading.Lock()

    def add(self, *secrets: str | None) -> None:
        new = {s for s in secrets if s and len(s) >= MIN_SECRET} - self.secrets
        if not new:
            return
        with self.lock:
            self.secrets |= new
            every = sorted({f for s in self.secrets for f in forms(s)}, key=len, reverse=True)
            self.text = re.compile("|".join(map(re.escape, every)))
            self.data = re.compile(b"|".join(re.escape(f.encode("utf-8", "surrogatepass")) for f in every))


_REGISTRY = _Registry()


def register(*secrets: str | None) -> None:
    """Remember secrets for the rest of the process: every later scrub removes all their forms."""
    _REGISTRY.add(*secrets)


def scrub(text: str) -> str:
    """`text` with every form of every registered secret replaced by [REDACTED]."""
    pattern = _REGISTRY.text
    return text if pattern is None or not text else pattern.sub(MASK, text)


def scrub_bytes(data: bytes) -> bytes:
    pattern = _REGISTRY.data
    return data if pattern is None or not data else pattern.sub(MASK.encode(), data)


def scrub_obj(obj: Any) -> Any:
    """A copy of a JSON-like value with every string (keys too) scrubbed; numbers are left alone."""
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, dict):
        return {scrub(k) if isinstance(k, str) else k: scrub_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_obj(v) for v in obj]
    return obj


def active() -> bool:
    """Whether any secret is registered (nothing to scrub otherwise)."""
    return _REGISTRY.text is not None


class Redactor:
    """A callable scrub that first registers the secrets it is given (a teacher's key and URL password)."""

    def __init__(self, *secrets: str | None):
        register(*secrets)

    def __call__(self, text: str) -> str:
        return scrub(text)


class SecretFilter(logging.Filter):
    """Scrubs each log record (message and arguments) before a handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _REGISTRY.text is not None:
            try:
                message = record.getMessage()
            except Exception:  # arguments that do not fit the format: show both, scrubbed
                message = f"{record.msg} {record.args}"
            record.msg = scrub(message)
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True
