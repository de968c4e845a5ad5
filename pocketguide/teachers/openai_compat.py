"""Any OpenAI-compatible endpoint (OpenAI, OpenRouter, vLLM, Ollama, llama.cpp server, LM Studio)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from ..errors import TeacherConfigError, TeacherError
from ..spec import TeacherSettings
from .base import TeacherRequest, TeacherResponse
from .registry import provider

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
OFFICIAL_HOSTS = ("api.openai.com", "openrouter.ai")


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
        self.client = openai.AsyncOpenAI(
            api_key=key,
            base_url=self.base_url,
            timeout=settings.timeout_s or 120.0,
            max_retries=0,
            default_headers=settings.extra_headers or None,
            http_client=httpx.AsyncClient(
                limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256),
                timeout=settings.timeout_s or 120.0,
            ),
        )
        self.last_headers: dict[str, str] = {}  # of the latest answer; per-call headers ride on the response

    def describe(self) -> dict[str, Any]:
        return {"provider": "openai", "model": self.settings.model, "base_url": self.base_url}

    def _body(self, request: TeacherRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model or self.settings.model, "messages": request.messages}
        for name in ("temperature", "top_p", "max_tokens", "seed", "response_format"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        extra = dict(self.settings.extra_body or {})
        extra.update(request.extra_body)
        if request.repeat_penalty is not None:
            extra.setdefault("repeat_penalty", request.repeat_penalty)
        if extra:
            body["extra_body"] = extra
        return body

    async def generate(self, request: TeacherRequest) -> TeacherResponse:
        body = self._body(request)
        if not body["model"]:
            raise TeacherError("config", "no model set: give teacher.model in stages.yaml or --model")
        started = time.perf_counter()
        try:
            raw = await self.client.chat.completions.with_raw_response.create(**body)
            headers = _limit_headers(raw.headers)
            completion = raw.parse()
        except Exception as exc:  # every failure becomes a typed, redacted TeacherError
            kind, retryable, status = _error_kind(exc)
            message = self.redact(f"{type(exc).__name__}: {exc}")[:500]
            err = TeacherError(kind, message + _hint(status), retryable=retryable, status=status)
            err.detail = message  # type: ignore[attr-defined]  # without the hint, for parameter detection
            err.headers = {}  # type: ignore[attr-defined]
            if isinstance(exc, openai.APIStatusError):
                err.headers = _limit_headers(exc.response.headers)  # type: ignore[attr-defined]
                err.retry_after = exc.response.headers.get("retry-after")  # type: ignore[attr-defined]
            raise err from None
        self.last_headers = headers
        latency = time.perf_counter() - started
        choices = getattr(completion, "choices", None)
        if not choices or choices[0].message is None:
            raise TeacherError("bad_response", "the endpoint answered with no choices", retryable=True)
        choice = choices[0]
        text = choice.message.content
        if text is None:
            raise TeacherError("empty", "the endpoint answered with no message content", retryable=True)
        usage = {}
        if completion.usage is not None:
            usage = {"prompt_tokens": completion.usage.prompt_tokens or 0,
                     "completion_tokens": completion.usage.completion_tokens or 0}
        return TeacherResponse(text=text, finish_reason=choice.finish_reason, model=completion.model or body["model"],
                               usage=usage, latency_s=latency, headers=headers)

    async def aclose(self) -> None:
        await self.client.close()
