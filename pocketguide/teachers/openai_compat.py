"""Any OpenAI-compatible endpoint (OpenAI, OpenRouter, vLLM, Ollama, llama.cpp server, LM Studio)."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson

from pocketguide.engine.errors import TeacherConfigError, TeacherError
from pocketguide.engine.redact import Redactor, register, secret_values, strip_credentials
from pocketguide.engine.spec import TeacherSettings

SAMPLING = TeacherSettings.group_fields("sampling")
from pocketguide.engine.version import __version__
from pocketguide.teachers.base import TeacherRequest, TeacherResponse
from pocketguide.teachers.registry import provider
from pocketguide.teachers.wire import LeanWire, SdkWire, WireResponse, proxy_for

log = logging.getLogger(__name__)
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
NO_KEY = "sk-no-key-needed"
OFFICIAL_HOSTS = ("api.openai.com", "openrouter.ai")
DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the openai SDK's


def env_value(name: str) -> str | None:
    """The environment first, then `.env` in the working folder (never overriding the environment)."""
    value = os.environ.get(name)
    if value:
        return value
    path = Path.cwd() / ".env"
    if not path.is_file():
        return None
    from dotenv import dotenv_values

    return dotenv_values(path).get(name) or None


def resolve_base_url(settings: TeacherSettings) -> str | None:
    return settings.base_url or env_value("OPENAI_BASE_URL") or None


def resolve_api_key(settings: TeacherSettings, base_url: str | None) -> str:
    env_name = settings.api_key_env or DEFAULT_KEY_ENV
    key = env_value(env_name)
    if key:
        return key
    if base_url is None or any(h in base_url for h in OFFICIAL_HOSTS):
        raise TeacherConfigError(
            f"No API key found for {base_url or 'api.openai.com'}: set the {env_name} environment variable "
            f"(or put it in .env), or point base_url at a local server that needs no key")
    return NO_KEY  # local servers ignore it; the client insists on one


def _error_kind(exc: Exception) -> tuple[str, bool, int | None]:
    """Map a transport exception (teachers/wire.py) to (reason kind, retryable, HTTP status)."""
    if isinstance(exc, TimeoutError):  # an OSError too: first
        return "timeout", True, None
    if isinstance(exc, ssl.SSLCertVerificationError):  # retrying will not change the certificate
        return "tls", False, None
    if isinstance(exc, (OSError, EOFError, asyncio.LimitOverrunError)):  # refused, reset, closed, broken answer
        return "connection", True, None
    return "unexpected", False, None


def _status_kind(status: int) -> tuple[str, bool]:
    if status == 429:
        return "rate_limit", True
    return f"http_{status}", status >= 500 or status == 408


def _server_message(raw: Any) -> str:
    """The error text an endpoint sent: OpenAI's {"error": {"message"}}, or the start of the body."""
    try:
        data = orjson.loads(raw.content)
    except orjson.JSONDecodeError:
        return raw.content[:300].decode("utf-8", "replace").strip()
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])[:400]
    if isinstance(err, str):
        return err[:400]
    return str(data)[:300]


def _without_credentials(url: str | None) -> str | None:
    """base_url without user:password@. The openai client would turn them into HTTP Basic auth in place of the
    Bearer key (the key silently dropped) and httpx logs every full URL, so they are removed, registered as
    secrets (scrubbed from anything written), and the user is told where the key goes instead."""
    if not url:
        return url
    clean, user, password = strip_credentials(url)
    if clean == url:
        return url
    for pw in {password, unquote(password or "")} - {None, ""}:  # as written in the URL, and decoded
        register(pw, f"{user}:{pw}", f"{unquote(user or '')}:{pw}")
    if password is None:  # https://TOKEN@host: the user part is the secret
        register(user, unquote(user or ""))
    log.warning("base_url %s carried credentials (%s:***@); they were removed and are never sent, logged or "
                "stored — pocketguide sends the API key as a Bearer token: put it in the environment or .env "
                "(OPENAI_API_KEY, or the variable named by api_key_env)", clean, user or "")
    return clean


def _limit_headers(headers: Any) -> dict[str, str]:
    """The rate-limit headers of one answer (x-ratelimit-*, retry-after), lower-cased."""
    return {k.lower(): v for k, v in headers.items()
            if k.lower().startswith("x-ratelimit") or k.lower() in ("retry-after", "retry-after-ms")}


def _hint(status: int | None) -> str:
    return {
        400: " — the endpoint rejected a parameter; check model options and response_format",
        401: " — the API key was refused; check the key variable",
        403: " — the key may not use this model",
        404: " — unknown model or wrong base_url (it usually ends in /v1)",
    }.get(status or 0, "")


@provider("openai")
class OpenAITeacher:
    """Chat completions on any OpenAI-compatible endpoint, no hidden retries: retry policy belongs to the
    ManagedTeacher around it.

    The body goes as plain JSON (encoded once, with orjson) and the answer is read with orjson, over the
    lean HTTP/1.1 client of teachers/wire.py (the openai SDK's client when a proxy from the environment
    applies): the SDK's request building, TypedDict transform and pydantic parsing cost several times the
    HTTP exchange itself in client CPU (bench/teacher_throughput.py), and every endpoint we target speaks
    the same JSON. The headers are the SDK's: Bearer key, OpenAI-Organization / OpenAI-Project from
    OPENAI_ORG_ID / OPENAI_PROJECT_ID, then extra_headers on top."""

    max_concurrency: int | None = None

    @staticmethod
    def where(settings: TeacherSettings) -> dict[str, Any]:
        """Which server the settings reach, found without building a client (OPENAI_BASE_URL or .env when
        base_url is unset): part of every record's fingerprint (teachers/generator.py)."""
        url = resolve_base_url(settings)
        return {"base_url": strip_credentials(url)[0] if url else None}

    def __init__(self, settings: TeacherSettings):
        self.settings = settings
        self.base_url = _without_credentials(resolve_base_url(settings))
        key = resolve_api_key(settings, self.base_url)
        # the key, secret headers (Authorization, X-Api-Key…) and secret extra_body values are scrubbed in every
        # form from everything the process writes (engine/redact.py); the dummy key of local servers is no secret
        self.redact = Redactor(key if key != NO_KEY else None, *secret_values(settings.extra_headers),
                               *secret_values(settings.extra_body))
        self.shown_url = self.base_url
        self.max_concurrency = settings.max_concurrency
        self.last_headers: dict[str, str] = {}  # of the latest answer; per-call headers ride on the response
        self.wire = self._wire(key)

    def _wire(self, key: str) -> LeanWire | SdkWire:
        s = self.settings
        timeout = s.timeout_s or 120.0
        url = self.base_url or DEFAULT_BASE_URL
        extra = {"user-agent": f"pocketguide/{__version__}", **(s.extra_headers or {})}
        proxy = proxy_for(url)
        if proxy is not None:
            log.info("%s is reached through the proxy the environment sets: using the openai SDK's client",
                     self.shown_url or url)
            return SdkWire(self.base_url, key, extra, timeout, min(timeout, 30.0))
        headers = {"authorization": f"Bearer {key}"}
        for name, env in (("openai-organization", "OPENAI_ORG_ID"), ("openai-project", "OPENAI_PROJECT_ID")):
            if os.environ.get(env):
                headers[name] = os.environ[env]
        for name, value in extra.items():  # later names replace earlier ones whatever their case
            headers[name.lower()] = str(value)
        try:
            from httpx2 import create_ssl_context  # the CA bundle the SDK's client would use (certifi, SSL_CERT_*)
        except ImportError:
            from httpx import create_ssl_context
        try:
            return LeanWire(url, headers, timeout, min(timeout, 30.0), ssl_context=create_ssl_context)
        except ValueError as exc:
            raise TeacherConfigError(self.redact(f"teacher: {exc} — fix base_url or extra_headers")) from None

    def describe(self) -> dict[str, Any]:
        return {"provider": "openai", "model": self.settings.model, "base_url": self.shown_url}

    def _body(self, request: TeacherRequest) -> dict[str, Any]:
        """The wire JSON: OpenAI's fields, then extra_body (settings, then request) merged on top."""
        body: dict[str, Any] = {"model": request.model or self.settings.model, "messages": request.messages}
        for name in (*SAMPLING, "response_format"):  # the sampling group's fields travel under their own names
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        body.update(self.settings.extra_body or {})
        body.update(request.extra_body)
        return body

    async def generate(self, request: TeacherRequest) -> TeacherResponse:
        body = self._body(request)
        if not body["model"]:
            raise TeacherError("config", "no model set: give teacher.model in stages.yaml or --model")
        started = time.perf_counter()
        try:
            raw = await self.wire.post("/chat/completions", body)
        except (TypeError, orjson.JSONEncodeError) as exc:  # extra_body holds something JSON cannot carry
            raise TeacherError("config", self.redact(f"the request body is not JSON-serialisable ({exc}); check "
                                                     f"extra_body"), retryable=False) from None
        except Exception as exc:  # every failure becomes a typed, redacted TeacherError
            kind, retryable, status = _error_kind(exc)
            detail = str(exc) or ("no answer within timeout_s" if kind == "timeout" else "")
            if kind == "tls":
                detail += (" — the server's certificate is not trusted: fix base_url, or point SSL_CERT_FILE at "
                           "the CA bundle that signed it")
            raise self._error(kind, f"{type(exc).__name__}: {detail}", retryable, status, {}) from None
        headers = _limit_headers(raw.headers)
        if raw.status >= 400:
            kind, retryable = _status_kind(raw.status)
            message = f"HTTP {raw.status} from {self.shown_url or 'api.openai.com'}: {_server_message(raw)}"
            raise self._error(kind, message, retryable, raw.status, headers)
        self.last_headers = headers
        latency = time.perf_counter() - started
        text, finish_reason, model, usage, answer_id = self._read(raw)
        request_id = raw.headers.get("x-request-id") or answer_id
        return TeacherResponse(text=text, finish_reason=finish_reason, model=model or body["model"],
                               usage=usage, latency_s=latency, headers=headers, provider="openai",
                               request_id=str(request_id)[:200] if request_id else None)

    def _error(self, kind: str, message: str, retryable: bool, status: int | None,
               headers: dict[str, str]) -> TeacherError:
        message = self.redact(message)[:500]
        err = TeacherError(kind, message + _hint(status), retryable=retryable, status=status)
        err.detail = message  # type: ignore[attr-defined]  # without the hint, for parameter detection
        err.headers = headers  # type: ignore[attr-defined]
        err.retry_after = headers.get("retry-after")  # type: ignore[attr-defined]
        return err

    def _read(self, raw: WireResponse) -> tuple[str, str | None, str | None, dict[str, int], Any]:
        """text, finish_reason, model, usage and id of a chat completion; anything else is a retryable
        bad_response."""
        try:
            data = orjson.loads(raw.content)
        except orjson.JSONDecodeError:
            snippet = self.redact(raw.content[:120].decode("utf-8", "replace"))
            raise TeacherError("bad_response", f"the endpoint answered HTTP {raw.status} with a body that is "
                               f"not JSON ({snippet!r}); is base_url an OpenAI-compatible /v1 URL?",
                               retryable=True) from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
            raise TeacherError("bad_response", "the endpoint answered with no choices", retryable=True)
        choice = choices[0]
        text = choice["message"].get("content")
        if not isinstance(text, str):
            raise TeacherError("empty", "the endpoint answered with no message content", retryable=True)
        usage_in = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        usage = {"prompt_tokens": int(usage_in.get("prompt_tokens") or 0),
                 "completion_tokens": int(usage_in.get("completion_tokens") or 0)} if usage_in else {}
        return text, choice.get("finish_reason"), data.get("model"), usage, data.get("id")

    async def aclose(self) -> None:
        await self.wire.aclose()
