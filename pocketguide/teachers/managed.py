"""The teacher every stage actually calls: cache first, then per-model limits, retries and the
fallback chain around a provider teacher (OpenAI-compatible or embedded). Built by TeacherPool.get."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pocketguide.engine.errors import CircuitOpen, TeacherConfigError, TeacherError
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.teachers.base import TeacherRequest, TeacherResponse
from pocketguide.teachers.cache import ResponseCache, cache_key, teacher_identity
from pocketguide.teachers.fallback import Attempts, model_chain
from pocketguide.teachers.flow import AdaptiveConcurrency, CircuitBreaker, ModelState, StageFlow
from pocketguide.teachers.limits import CHARS_PER_TOKEN, RateLimits, Ticket, exhausted_limit, retry_after_s
from pocketguide.teachers.pricing import Budget, cost_of
from pocketguide.teachers.retry import refused_parameter, with_retries, without

log = logging.getLogger("pocketguide.teachers")


@dataclass
class RunShared:
    """What all teachers of one run share: the cache, the budget, and each model's flow control."""

    cache: ResponseCache | None = None
    budget: Budget = field(default_factory=Budget)
    ceiling: int = 16  # the run's concurrency: the adaptive in-flight cap starts (and ends) here
    states: dict[tuple[str, str], ModelState] = field(default_factory=dict)

    def state(self, endpoint: str, model: str, settings: TeacherSettings, own_cap: int | None) -> ModelState:
        key = (endpoint, model)
        if key not in self.states:
            caps = [c for c in (self.ceiling, settings.max_concurrency, own_cap) if c]
            self.states[key] = ModelState(
                endpoint, model,
                RateLimits(settings.requests_per_minute, settings.input_tokens_per_minute,
                           settings.output_tokens_per_minute),
                AdaptiveConcurrency(min(caps)),
                CircuitBreaker(settings.circuit_window or 100, settings.circuit_error_rate or 0.5))
        return self.states[key]


class ManagedTeacher:
    """A Teacher (same interface) wrapping a provider teacher for one stage's settings."""

    def __init__(self, inner: Any, settings: TeacherSettings, shared: RunShared, stage: str | None):
        self.inner, self.settings, self.shared, self.stage = inner, settings, shared, stage
        self.max_concurrency = getattr(inner, "max_concurrency", None)
        self.endpoint = teacher_identity(inner)
        self.flow = StageFlow()  # what this stage's requests met: 429s, waits, pauses
        if shared.budget.max_cost is not None and not settings.prices:
            first = (model_chain(settings, None) or ["my-model"])[0]
            raise TeacherConfigError(
                f"--max-cost needs prices: add teacher.prices (USD per million tokens, e.g. prices: "
                f"{{{first}: {{input: 0.5, output: 1.5}}}}) to stages.yaml, or use --max-requests")

    def describe(self) -> dict[str, Any]:
        d = dict(self.inner.describe())
        chain = self._chain(None)
        d["models"] = chain
        d["flow"] = [self.shared.states[(self.endpoint, m)].summary() for m in chain
                     if (self.endpoint, m) in self.shared.states]
        d["budget"] = self.shared.budget.summary()
        d["cache"] = self.shared.cache.session_summary() if self.shared.cache else None
        return d

    def flow_stats(self) -> dict[str, Any]:
        """For the stage's stats.json and the run summary: 429s, Retry-After waits, pauses and why."""
        return self.flow.summary()

    async def aclose(self) -> None:
        """The pool closes the provider teacher; this wrapper holds nothing of its own."""

    def _chain(self, requested: str | None) -> list[str]:
        # a provider with one implicit model (the embedded GGUF) names it in describe()
        return model_chain(self.settings, requested) or [str(self.inner.describe().get("model") or "default")]

    async def generate(self, request: TeacherRequest) -> TeacherResponse:
        chain = self._chain(request.model)
        keys: dict[str, str] = {}
        cache = self.shared.cache
        if cache is not None:
            for model in chain:  # an answer from any model of the chain is reused: it was paid for
                keys[model] = cache_key(self.endpoint, model, request, self.settings.extra_body)
                hit = cache.get(keys[model])
                if hit is not None:
                    return self._from_cache(hit, model)
        attempts, notes = Attempts(), []
        for model in chain:
            state = self.shared.state(self.endpoint, model, self.settings, self.max_concurrency)
            attempts.tried(model)
            tries = [0]
            try:
                response = await self._with_retries(state, model, request, notes, tries)
            except TeacherError as exc:
                attempts.failed(model, exc, tries[0])
                if len(chain) > 1:
                    log.info("model %s failed (%s); %s", model, exc.kind,
                                "trying the next model" if model != chain[-1] else "no model left")
                continue
            return self._finish(response, model, attempts, notes, keys.get(model))
        states = [self.shared.state(self.endpoint, m, self.settings, self.max_concurrency) for m in chain]
        if all(s.breaker.opened for s in states):
            raise CircuitOpen(self._circuit_message(states))
        raise attempts.final_error(notes)

    async def _with_retries(self, state: ModelState, model: str, request: TeacherRequest, notes: list[str],
                            tries: list[int]) -> TeacherResponse:
        s = self.settings
        request = dataclasses.replace(request, model=model)

        async def once() -> TeacherResponse:
            tries[0] += 1
            if state.breaker.opened:
                raise TeacherError("circuit_open", f"{model} is failing too often on {self.endpoint} "
                                   f"(circuit breaker open)", retryable=False)
            return await self._send(state, request, notes, tries[0] > 1)

        return await with_retries(once, s.max_retries, s.retry_initial_s, s.retry_max_s, self._waiting)

    async def _send(self, state: ModelState, request: TeacherRequest, notes: list[str], retry: bool
                    ) -> TeacherResponse:
        """One request, retried once without an optional parameter the endpoint refuses (remembered)."""
        try:
            response, dropped = await self._once(state, request, retry)
        except TeacherError as exc:
            name = refused_parameter(exc, getattr(exc, "sent", request))
            if name is None:
                raise
            log.warning("%s rejected %s; retrying without it", state.model, name)
            state.dropped_params.add(name)
            response, dropped = await self._once(state, request, True)
        notes.extend(n for n in dropped if n not in notes)
        return response

    async def _once(self, state: ModelState, request: TeacherRequest, retry: bool = False
                    ) -> tuple[TeacherResponse, list[str]]:
        """In-flight cap → rate limits (pause, buckets) → budget → the provider at once; the outcome feeds
        the cap and the limits. The limits come after the cap so a pause holds every request not yet sent,
        and a ticket's time is its request's send time (the x-ratelimit-remaining-* arithmetic relies on
        it). The budget and the parameters the endpoint refused are checked as the request leaves, so what
        finished or was learnt meanwhile counts. A retry takes the next free slot before new requests."""
        prompt_tokens = sum(len(m.get("content") or "") for m in request.messages) // CHARS_PER_TOKEN + 8
        output_tokens = state.limits.estimate_output(request.max_tokens)
        await state.concurrency.acquire(first=retry)
        ticket = None
        try:
            ticket = await state.limits.acquire(prompt_tokens, output_tokens, request.max_tokens)
            self.flow.paced_s += ticket.paced_s
            self.flow.limits_per_minute = state.limits.limits
            self.shared.budget.before_request()  # last, as the request leaves: what finished meanwhile counts
            req, dropped = without(request, state.dropped_params)
            state.calls += 1
            response = await self.inner.generate(req)
            state.concurrency.succeeded()  # before release, so a waiter sees the raised cap at once
        except TeacherError as exc:
            headers = getattr(exc, "headers", None) or {}
            if exc.status == 429:
                self._throttled(state, ticket, headers)
            else:
                state.breaker.record(False)
                state.watch.record(False)
                self._follow(state, headers, ticket)
            state.last_errors.append(f"{exc.kind}: {str(exc)[:160]}")
            exc.sent = req  # type: ignore[attr-defined]  # what went, for refused_parameter
            raise
        finally:
            if ticket is not None:
                state.limits.answered(ticket)
            await state.concurrency.release()
        state.breaker.record(True)
        state.watch.record(False)
        self._follow(state, response.headers, ticket)
        state.limits.observe(response.usage)
        return response, dropped

    def _follow(self, state: ModelState, headers: dict[str, str], ticket: Ticket) -> None:
        pause = state.limits.follow(headers, ticket)
        if pause is not None:
            self.flow.paused(pause[0], state.limits.pause(pause[1], pause[0]))

    def _throttled(self, state: ModelState, ticket: Ticket, headers: dict[str, str]) -> None:
        """A 429. The request that got it waits its Retry-After (retry.py); the whole model pauses only when
        the limit is shared: the server says a limit is used up, or 429s came in a burst."""
        state.throttled += 1
        self.flow.rate_limited += 1
        unpaced = state.limits.follow(headers, ticket)  # the pause, if any, is decided here for a 429
        recent = state.watch.record(True)
        used_up = exhausted_limit(headers)
        if used_up is None and not state.watch.is_burst(recent):
            return
        if ticket.sent_at < state.limits.last_pause_at:
            return  # sent before the current pause began: the same burst, nothing new
        reason = (f"x-ratelimit-remaining-{used_up}=0 on a 429" if used_up else
                  f"429 burst ({state.watch.burst}+ of the last {state.watch.answers.maxlen} answers)")
        seconds = retry_after_s(headers) or (unpaced[1] if unpaced else None) or 1.0
        self.flow.paused(reason, state.limits.pause(seconds, reason))
        if state.concurrency.throttled(ticket.sent_at):
            self.flow.concurrency_cuts += 1

    def _waiting(self, exc: BaseException, seconds: float) -> None:
        """A retry is about to wait: count the waits the server asked for."""
        if retry_after_s(getattr(exc, "headers", None)) is not None:
            self.flow.retry_after_waits += 1
            self.flow.retry_after_wait_s += seconds

    def _finish(self, response: TeacherResponse, model: str, attempts: Attempts, notes: list[str],
                key: str | None) -> TeacherResponse:
        response.selected_model = model
        response.attempted_models = list(attempts.models)
        response.errors = attempts.errors + response.errors
        response.notes = notes + [n for n in response.notes if n not in notes]
        response.cost = cost_of(self.settings.prices, response.usage, model, response.model)
        self.shared.budget.add_cost(response.cost)
        if self.shared.cache is not None and key is not None:
            self.shared.cache.put(key, _cacheable(response), stage=self.stage, endpoint=self.endpoint, model=model)
        return response

    def _from_cache(self, hit: dict[str, Any], model: str) -> TeacherResponse:
        started = time.perf_counter()
        response = TeacherResponse(
            text=hit["text"], finish_reason=hit.get("finish_reason"), model=hit.get("model") or model,
            usage=hit.get("usage") or {}, attempted_models=hit.get("attempted_models") or [model],
            errors=hit.get("errors") or [], cached=True, notes=hit.get("notes") or [],
            selected_model=hit.get("selected_model") or model,
            cost=0.0 if self.settings.prices else None,  # nothing was spent on this run
            provider=hit.get("provider"), request_id=hit.get("request_id"))  # the paid-for answer's own id
        response.latency_s = time.perf_counter() - started
        return response

    def _circuit_message(self, states: list[ModelState]) -> str:
        parts = []
        for s in states:
            b = s.breaker.summary()
            last = "; ".join(s.last_errors) or "-"
            parts.append(f"{s.model}: {b['recent_errors']} of the last {b['recent_calls']} calls failed (last: {last})")
        return (f"circuit breaker open for {self.endpoint} — " + " | ".join(parts) +
                ". Everything finished is kept; check that the server is up, the key and model names are "
                "right, then rerun the same command to resume")


def _cacheable(response: TeacherResponse) -> dict[str, Any]:
    return {"text": response.text, "finish_reason": response.finish_reason, "model": response.model,
            "selected_model": response.selected_model, "usage": response.usage,
            "attempted_models": response.attempted_models, "errors": response.errors, "notes": response.notes,
            "cost": response.cost, "provider": response.provider, "request_id": response.request_id}
