"""Any OpenAI-compatible endpoint (OpenAI, OpenRouter, vLLM, Ollama, llama.cpp server, LM Studio)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson

from ..errors import TeacherConfigError, TeacherError
from ..spec import TeacherSettings
from .base import TeacherRequest, TeacherResponse
from .registry import provider

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
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
    return "sk-no-key-needed"  # local servers ignore it; the client insists on one


class Redactor:
    """Removes a secret's bytes from any text before it is logged, stored or raised."""

    def __init__(self, *secrets: str):
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "[REDACTED]")
        return text


def _error_kind(exc: Exception) -> tuple[str, bool, int | None]:
    """Map an openai/httpx exception to (reason kind, retryable, HTTP status)."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout", True, None
    if isinstance(exc, openai.APIConnectionError):
        return "connection", True, None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429:
            return "rate_limit", True, status
        if status >= 500:
            return f"http_{status}", True, status
        return f"http_{status}", False, status
    if isinstance(exc, (openai.APIResponseValidationError, ValueError)):
        return "bad_response", True, None
    return "unexpected", False, None


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
    """AsyncOpenAI with no hidden retries: retry policy belongs to the caller (see issue on limits)."""

    max_concurrency: int | None = None

    def __init__(self, settings: TeacherSettings):
        self.settings = settings
        self.base_url = resolve_base_url(settings)
        key = resolve_api_key(settings, self.base_url)
        self.redact = Redactor(key)
        self.max_concurrency = settings.max_concurrency
        self._key = key
        self._shards: list[list[Any]] = []  # [client, requests in flight]
        self.client = self._new_shard()
        self.last_headers: dict[str, str] = {}  # of the latest answer; per-call headers ride on the response

    def _new_shard(self) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(
            api_key=self._key,
            base_url=self.base_url,
            timeout=self.settings.timeout_s or 120.0,
            max_retries=0,
            default_headers=self.settings.extra_headers or None,
            http_client=httpx.AsyncClient(
                limits=httpx.Limits(max_connections=SHARD_SIZE * 4, max_keepalive_connections=SHARD_SIZE * 2),
                timeout=self.settings.timeout_s or 120.0,
            ),
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
        return {"provider": "openai", "model": self.settings.model, "base_url": self.base_url}

    def _body(self, request: TeacherRequest) -> dict[str, Any]:
        """The wire JSON: OpenAI's fields, then extra_body (settings, then request) merged on top."""
        body: dict[str, Any] = {"model": request.model or self.settings.model, "messages": request.messages}
        for name in ("temperature", "top_p", "max_tokens", "seed", "response_format"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.repeat_penalty is not None:
            body["repeat_penalty"] = request.repeat_penalty
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
            # the SDK's generic post: same auth, timeouts and typed errors as chat.completions.create, without
            # its per-call TypedDict transform and model parsing (a third of the client's CPU per request)
            raw = await shard[0].post("/chat/completions", body=body, cast_to=httpx.Response)
        except Exception as exc:  # every failure becomes a typed, redacted TeacherError
            raise self._error(exc) from None
        finally:
            shard[1] -= 1
        headers = _limit_headers(raw.headers)
        self.last_headers = headers
        latency = time.perf_counter() - started
        text, finish_reason, model, usage = self._read(raw)
        return TeacherResponse(text=text, finish_reason=finish_reason, model=model or body["model"],
                               usage=usage, latency_s=latency, headers=headers)

    def _error(self, exc: Exception) -> TeacherError:
        kind, retryable, status = _error_kind(exc)
        message = self.redact(f"{type(exc).__name__}: {exc}")[:500]
        err = TeacherError(kind, message + _hint(status), retryable=retryable, status=status)
        err.detail = message  # type: ignore[attr-defined]  # without the hint, for parameter detection
        err.headers = {}  # type: ignore[attr-defined]
        if isinstance(exc, openai.APIStatusError):
            err.headers = _limit_headers(exc.response.headers)  # type: ignore[attr-defined]
            err.retry_after = exc.response.headers.get("retry-after")  # type: ignore[attr-defined]
        return err

    def _read(self, raw: httpx.Response) -> tuple[str, str | None, str | None, dict[str, int]]:
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
