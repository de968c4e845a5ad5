"""Any OpenAI-compatible endpoint (OpenAI, OpenRouter, vLLM, Ollama, llama.cpp server, LM Studio)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx

try:  # the openai SDK's own HTTP client (openai ≥ 3): given an httpx client instead, the SDK converts every
    # request and response, ~15% more client CPU per call (bench/teacher_throughput.py)
    import httpcore2  # noqa: F401  # its connection pool: imported with the SDK, not at the first client (~45 ms)
    import httpx2 as http
except ImportError:  # an older SDK speaks httpx
    http = httpx
import openai
import openai._base_client as sdk_base  # get_platform: what the SDK would look up in a thread per client
import orjson

from pocketguide.engine.errors import TeacherConfigError, TeacherError
from pocketguide.engine.redact import Redactor, register, secret_values, strip_credentials
from pocketguide.engine.teacher_spec import TeacherSettings

SAMPLING = TeacherSettings.group_fields("sampling")
from pocketguide.engine.version import __version__
from pocketguide.teachers.base import TeacherRequest, TeacherResponse
from pocketguide.teachers.registry import provider
from pocketguide.teachers.sockets import on_asyncio_sockets
from pocketguide.teachers.wire import LeanWire, proxy_for

log = logging.getLogger(__name__)
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
NO_KEY = "sk-no-key-needed"
OFFICIAL_HOSTS = ("api.openai.com", "openrouter.ai")
# httpcore scans every connection of its pool (quadratically) on each request and response; at 32+
# requests in flight that costs milliseconds of CPU per request, so requests are spread over several
# small pools of SHARD_SIZE in flight each (measured in bench/teacher_throughput.py)
SHARD_SIZE = 4
MAX_SHARDS = 64
DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the openai SDK's
# The SDK's telemetry headers (its version, the OS, CPU, Python, async library, retry count, read timeout) are left out with its
# own Omit: no endpoint needs them, and every header costs client CPU in each layer of the SDK's HTTP stack
# (~0.2 ms a request for these nine; bench/teacher_throughput.py). extra_headers may still set them.
SDK_TELEMETRY = ("X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-OS", "X-Stainless-Arch",
                 "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Async")
PER_CALL_TELEMETRY = ("X-Stainless-Retry-Count", "X-Stainless-Read-Timeout")
CALL_OPTIONS = {"headers": {name: openai.Omit() for name in PER_CALL_TELEMETRY}}


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
    """Map a transport exception (the openai SDK's or httpx's; the lean client's: teachers/wire.py) to
    (reason kind, retryable, HTTP status)."""
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException, http.TimeoutException, TimeoutError)):
        return "timeout", True, None  # TimeoutError is an OSError too: first
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in _causes(exc)):  # retrying will not change it
        return "tls", False, None  # the SDK wraps it (APIConnectionError from httpx's ConnectError from it)
    if isinstance(exc, (openai.APIConnectionError, httpx.TransportError, http.TransportError)):
        return "connection", True, None
    if isinstance(exc, (OSError, EOFError, asyncio.LimitOverrunError)):  # lean: refused, reset, closed, broken answer
        return "connection", True, None
    return "unexpected", False, None


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and the ones it was raised from or while handling, outermost first."""
    chain: list[BaseException] = [exc]
    while len(chain) < 8 and (chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]
    return chain


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


@functools.cache
def _sdk_platform() -> Any:
    """The SDK's platform name (its X-Stainless-OS, left out of requests here), looked up once a process."""
    return sdk_base.get_platform()


def _ssl_context(url: str) -> ssl.SSLContext:
    """The SDK's CA bundle (certifi, SSL_CERT_*; loading it costs ~55 ms) for an https endpoint. A plain
    http one never uses TLS (every call goes to base_url and no redirect is followed), so it gets a context
    that trusts nothing: were TLS ever asked of it, verification would fail rather than pass."""
    if url.lower().startswith("https:"):
        return http.create_ssl_context()
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # certificates and host names checked, no CA loaded


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
    (bench/teacher_throughput.py), and every endpoint we target speaks the same JSON.

    `transport: lean` swaps the SDK's client for the minimal HTTP/1.1 client of teachers/wire.py (less
    client CPU per request) with the same headers: Bearer key, OpenAI-Organization / OpenAI-Project from
    OPENAI_ORG_ID / OPENAI_PROJECT_ID, then extra_headers on top. Behind a proxy from the environment
    the SDK's client is used whatever the setting."""

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
        self.last_headers: dict[str, str] = {}  # of the latest answer; per-call headers ride on the response
        self.wire = self._lean_wire() if settings.transport == "lean" else None
        self.transport = "lean" if self.wire is not None else "sdk"
        if self.wire is None:
            self._ssl = _ssl_context(self.base_url or DEFAULT_BASE_URL)  # one for all shards
            self.client = self._new_shard()
            base = self.client.base_url  # merged with the path as the SDK does it, once: an absolute URL is parsed
            self._url = str(base.copy_with(raw_path=base.raw_path + b"chat/completions"))  # once a call, not twice

    def _lean_wire(self) -> LeanWire | None:
        """teachers/wire.py's client with the SDK's headers; None (the SDK's client) behind a proxy."""
        url = self.base_url or DEFAULT_BASE_URL
        if proxy_for(url) is not None:
            log.info("%s is reached through the proxy the environment sets: transport lean falls back to the "
                     "openai SDK's client", self.shown_url or url)
            return None
        headers = {"authorization": f"Bearer {self._key}"}
        for name, env in (("openai-organization", "OPENAI_ORG_ID"), ("openai-project", "OPENAI_PROJECT_ID")):
            if os.environ.get(env):
                headers[name] = os.environ[env]
        for name, value in self._headers.items():  # later names replace earlier ones whatever their case
            headers[name.lower()] = str(value)
        timeout = self.settings.timeout_s or 120.0
        try:  # the CA bundle the SDK's client would use (certifi, SSL_CERT_*), built at the first TLS connection
            return LeanWire(url, headers, timeout, min(timeout, 30.0), ssl_context=http.create_ssl_context)
        except ValueError as exc:
            raise TeacherConfigError(self.redact(f"teacher: {exc} — fix base_url or extra_headers")) from None

    def _new_shard(self) -> openai.AsyncOpenAI:
        timeout = http.Timeout(self.settings.timeout_s or 120.0, connect=min(self.settings.timeout_s or 120.0, 30.0))
        http_client = http.AsyncClient(
            timeout=timeout, verify=self._ssl,
            limits=http.Limits(max_connections=SHARD_SIZE * 4, max_keepalive_connections=SHARD_SIZE * 2))
        on_asyncio_sockets(http_client)  # httpcore on asyncio's sockets, not anyio's (teachers/sockets.py)
        client = openai.AsyncOpenAI(
            api_key=self._key,
            base_url=self.base_url,
            timeout=timeout,
            max_retries=0,
            default_headers={**{name: openai.Omit() for name in SDK_TELEMETRY}, **self._headers},
            http_client=http_client,
        )
        if getattr(client, "_platform", False) is None:  # else each new client's first requests (all 4 of them)
            client._platform = _sdk_platform()  # ask for it in a worker thread each: 32 threads at start
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
        info = {"provider": "openai", "model": self.settings.model, "base_url": self.shown_url}
        if self.settings.transport == "lean":  # the default (the SDK's client) goes unsaid
            info["transport"] = self.transport if self.transport == "lean" else "sdk (lean asked; a proxy applies)"
        return info

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
            raw = await (self._post_sdk(body) if self.wire is None else self._post_lean(body))
        except TeacherError:
            raise
        except Exception as exc:  # every failure becomes a typed, redacted TeacherError
            kind, retryable, status = _error_kind(exc)
            detail = str(exc) or ("no answer within timeout_s" if kind == "timeout" else "")
            root = _causes(exc)[-1]
            if root is not exc and str(root) and str(root) not in detail:  # the SDK's "Connection error." says little
                detail += f" ({type(root).__name__}: {root})"
            if kind == "tls":
                detail += (" — the server's certificate is not trusted: fix base_url, or point SSL_CERT_FILE at "
                           "the CA bundle that signed it")
            raise self._error(kind, f"{type(exc).__name__}: {detail}", retryable, status, {}) from None
        headers = _limit_headers(raw.headers)
        if raw.status_code >= 400:
            kind, retryable = _status_kind(raw.status_code)
            message = f"HTTP {raw.status_code} from {self.shown_url or 'api.openai.com'}: {_server_message(raw)}"
            raise self._error(kind, message, retryable, raw.status_code, headers)
        self.last_headers = headers
        latency = time.perf_counter() - started
        text, finish_reason, model, usage, answer_id = self._read(raw)
        request_id = raw.headers.get("x-request-id") or answer_id
        return TeacherResponse(text=text, finish_reason=finish_reason, model=model or body["model"],
                               usage=usage, latency_s=latency, headers=headers, provider="openai",
                               request_id=str(request_id)[:200] if request_id else None)

    async def _post_sdk(self, body: dict[str, Any]) -> Any:
        try:  # the JSON the SDK would send (compact, UTF-8), encoded by orjson: ~10x faster than its json.dumps
            content = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)  # YAML may give extra_body int keys
        except (TypeError, orjson.JSONEncodeError) as exc:  # extra_body holds something JSON cannot carry
            raise TeacherError("config", self.redact(f"the request body is not JSON-serialisable ({exc}); check "
                                                     f"extra_body"), retryable=False) from None
        shard = self._shard()
        shard[1] += 1
        try:
            return await shard[0].post(self._url, content=content, cast_to=http.Response,
                                       options=CALL_OPTIONS)  # type: ignore[arg-type]
        except openai.APIStatusError as exc:
            return exc.response
        finally:
            shard[1] -= 1

    async def _post_lean(self, body: dict[str, Any]) -> Any:
        assert self.wire is not None
        try:
            return await self.wire.post("/chat/completions", body)
        except (TypeError, orjson.JSONEncodeError) as exc:  # extra_body holds something JSON cannot carry
            raise TeacherError("config", self.redact(f"the request body is not JSON-serialisable ({exc}); check "
                                                     f"extra_body"), retryable=False) from None

    def _error(self, kind: str, message: str, retryable: bool, status: int | None,
               headers: dict[str, str]) -> TeacherError:
        message = self.redact(message)[:500]
        err = TeacherError(kind, message + _hint(status), retryable=retryable, status=status)
        err.detail = message  # type: ignore[attr-defined]  # without the hint, for parameter detection
        err.headers = headers  # type: ignore[attr-defined]
        err.retry_after = headers.get("retry-after")  # type: ignore[attr-defined]
        return err

    def _read(self, raw: Any) -> tuple[str, str | None, str | None, dict[str, int], Any]:
        """text, finish_reason, model, usage and id of a chat completion; anything else is a retryable
        bad_response."""
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
        return text, choice.get("finish_reason"), data.get("model"), usage, data.get("id")

    async def aclose(self) -> None:
        if self.wire is not None:
            await self.wire.aclose()
        for client, _ in self._shards:
            await client.close()
