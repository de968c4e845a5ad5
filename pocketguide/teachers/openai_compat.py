"""Any OpenAI-compatible endpoint (OpenAI, OpenRouter, vLLM, Ollama, llama.cpp server, LM Studio)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx

try:  # the openai SDK's own HTTP client (openai ≥ 3): given an httpx client instead, the SDK converts every
    import httpx2 as http  # request and response, ~15% more client CPU per call (bench/teacher_throughput.py)
except ImportError:  # an older SDK speaks httpx
    http = httpx
import openai
import orjson

from pocketguide.engine.errors import TeacherConfigError, TeacherError
from pocketguide.engine.redact import Redactor, register, secret_values, strip_credentials
from pocketguide.engine.spec import TeacherSettings

SAMPLING = TeacherSettings.group_fields("sampling")
from pocketguide.engine.version import __version__
from pocketguide.teachers.base import TeacherRequest, TeacherResponse
from pocketguide.teachers.registry import provider

log = logging.getLogger(__name__)
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
NO_KEY = "sk-no-key-needed"
OFFICIAL_HOSTS = ("api.openai.com", "openrouter.ai")
# httpcore scans every connection of its pool (quadratically) on each request and response; at 32+
# requests in flight that costs milliseconds of CPU per request, so requests are spread over several
# small pools of SHARD_SIZE in flight each (measured in bench/teacher_throughput.py)
SHARD_SIZE = 4
MAX_SHARDS = 64


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
    """Map a transport exception (the openai SDK's or httpx's) to (reason kind, retryable, HTTP status)."""
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException, http.TimeoutException)):
        return "timeout", True, None
    if isinstance(exc, (openai.APIConnectionError, httpx.TransportError, http.TransportError)):
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
    """Chat completions through the openai SDK's client, no hidden retries: retry policy belongs to the
    ManagedTeacher around it.

    The call goes through the SDK's generic `post` (its auth, base-URL handling, timeouts and typed
    status errors) with the body as plain JSON and the answer read with orjson: the SDK's TypedDict
    transform and pydantic parsing of every completion cost about as much CPU as the HTTP exchange
    (bench/teacher_throughput.py), and every endpoint we target speaks the same JSON."""

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
        self._key = key
        self._headers = {"user-agent": f"pocketguide/{__version__}", **(settings.extra_headers or {})}
        self._shards: list[list[Any]] = []  # [client, requests in flight]
        self._ssl = http.create_ssl_context()  # one for all shards: building one costs ~30 ms
        self.client = self._new_shard()
        self.last_headers: dict[str, str] = {}  # of the latest answer; per-call headers ride on the response

    def _new_shard(self) -> openai.AsyncOpenAI:
        timeout = http.Timeout(self.settings.timeout_s or 120.0, connect=min(self.settings.timeout_s or 120.0, 30.0))
        client = openai.AsyncOpenAI(
            api_key=self._key,
            base_url=self.base_url,
            timeout=timeout,
            max_retries=0,
            default_headers=self._headers,
            http_client=http.AsyncClient(
                timeout=timeout, verify=self._ssl,
                limits=http.Limits(max_connections=SHARD_SIZE * 4, max_keepalive_connections=SHARD_SIZE * 2)),
        )
        self._shards.append([client, 0])
        return client

    def _shard(self) -> list[Any]:
        """The least busy connection pool, or a new one when all hold SHARD_SIZE requests."""
        shard = min(self._shards, key=lambda s: s[1])
        if shard[1] >= SHARD_SIZE and len(self._shards) < MAX_SHARDS:
            self._new_shard()
            shard = self._shards[-1]
        return shard

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
        shard = self._shard()
        shard[1] += 1
        try:
            raw = await shard[0].post("/chat/completions", body=body, cast_to=http.Response)
        except openai.APIStatusError as exc:
            raw = exc.response
        except Exception as exc:  # every failure becomes a typed, redacted TeacherError
            kind, retryable, status = _error_kind(exc)
            raise self._error(kind, f"{type(exc).__name__}: {exc}", retryable, status, {}) from None
        finally:
            shard[1] -= 1
        headers = _limit_headers(raw.headers)
        if raw.status_code >= 400:
            kind, retryable = _status_kind(raw.status_code)
            message = f"HTTP {raw.status_code} from {self.shown_url or 'api.openai.com'}: {_server_message(raw)}"
            raise self._error(kind, message, retryable, raw.status_code, headers)
        self.last_headers = headers
        latency = time.perf_counter() - started
        text, finish_reason, model, usage = self._read(raw)
        return TeacherResponse(text=text, finish_reason=finish_reason, model=model or body["model"],
                               usage=usage, latency_s=latency, headers=headers)

    def _error(self, kind: str, message: str, retryable: bool, status: int | None,
               headers: dict[str, str]) -> TeacherError:
        message = self.redact(message)[:500]
        err = TeacherError(kind, message + _hint(status), retryable=retryable, status=status)
        err.detail = message  # type: ignore[attr-defined]  # without the hint, for parameter detection
        err.headers = headers  # type: ignore[attr-defined]
        err.retry_after = headers.get("retry-after")  # type: ignore[attr-defined]
        return err

    def _read(self, raw: Any) -> tuple[str, str | None, str | None, dict[str, int]]:
        """text, finish_reason, model, usage of a chat completion; anything else is a retryable bad_response."""
        try:
            data = orjson.loads(raw.content)
        except orjson.JSONDecodeError:
            snippet = self.redact(raw.content[:120].decode("utf-8", "replace"))
            raise TeacherError("bad_response", f"the endpoint answered HTTP {raw.status_code} with a body that is "
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
        return text, choice.get("finish_reason"), data.get("model"), usage

    async def aclose(self) -> None:
        for client, _ in self._shards:
            await client.close()
