"""Pydantic models of a teacher's settings in stages.yaml (pipeline.teacher, a stage's teacher, CLI overrides),
in groups: endpoint, local runtime, sampling, output shape, limits and retries, capabilities, prices. Strict: an
unknown key is an error, never ignored."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # a teacher group's set fields decide what the teacher answers (they go into records' fingerprints) unless
    # the group says otherwise; a field's json_schema_extra {"answer": False/True} overrides its group
    decides_answer: ClassVar[bool] = True


HOW_NOT_WHAT = {"answer": False}  # changes how a call is made, not what the teacher answers
WHO_ANSWERS = {"answer": True}  # decides which model answers, in a group that otherwise does not


class Price(Strict):
    """What one model costs, in USD per million tokens."""

    input: float = Field(ge=0, description="USD per million prompt (input) tokens")
    output: float = Field(ge=0, description="USD per million completion (output) tokens")


class Endpoint(Strict):
    """Where the teacher is: which provider and model, and how to reach it."""

    provider: str | None = Field(
        None, description="a registered teacher provider: openai = any OpenAI-compatible endpoint; embedded = "
                          "llama.cpp in-process")
    model: str | None = Field(None, description="model id sent to the endpoint")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str | None = Field(
        None, json_schema_extra=HOW_NOT_WHAT,
        description="name of the environment variable holding the key (default OPENAI_API_KEY)")
    timeout_s: float | None = Field(None, gt=0, json_schema_extra=HOW_NOT_WHAT,
                                    description="per-request timeout in seconds")
    extra_headers: dict[str, str] | None = Field(None, json_schema_extra=HOW_NOT_WHAT,
                                                 description="headers passed through to the endpoint")
    extra_body: dict[str, Any] | None = Field(None, description="JSON fields passed through (e.g. OpenRouter provider)")
    transport: Literal["sdk", "lean"] | None = Field(
        None, json_schema_extra=HOW_NOT_WHAT,
        description="openai provider's HTTP client: sdk = the openai SDK's own client (default, when unset); lean = "
                    "teachers/wire.py, a minimal HTTP/1.1 keep-alive client measured at ~4x less client CPU per "
                    "request, which falls back to the SDK's client behind a proxy from the environment")


class LocalRuntime(Strict):
    """An in-process model (the embedded provider): the weights and the llama.cpp runtime."""

    model_path: str | None = Field(None, description="GGUF file for the embedded teacher")
    threads: int | None = Field(None, ge=1, json_schema_extra=HOW_NOT_WHAT,
                                description="embedded: CPU threads (default: the cores this process may use, its "
                                            "CPU affinity; --threads overrides it for one run)")
    n_ctx: int | None = Field(None, ge=256, json_schema_extra=HOW_NOT_WHAT,
                              description="embedded: context window per request in tokens (default 4096)")
    n_parallel: int | None = Field(
        None, ge=1, json_schema_extra=HOW_NOT_WHAT,
        description="embedded: requests decoded at once (default 1; 4 gave no gain on 2 cores, "
                    "bench/embedded_teacher.py --slots K measures it)")


class Sampling(Strict):
    """How the teacher samples; each set field goes into every request as is."""

    temperature: float | None = Field(None, ge=0, le=2, description="sampling temperature")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling")
    max_tokens: int | None = Field(None, ge=1, description="completion token cap")
    seed: int | None = Field(None, description="sampling seed, where the endpoint supports it")
    repeat_penalty: float | None = Field(None, gt=0, description="repetition penalty (embedded, llama.cpp servers)")
    repeat_last_n: int | None = Field(None, ge=-1, description="tokens the repetition penalty looks back over "
                                      "(embedded, llama.cpp servers; llama.cpp's default 64, -1 = the whole context)")


class OutputShape(Strict):
    """What the teacher is asked to write: system prompt, structured output, the schema sent."""

    system_prompt: str | None = Field(None, description="system message sent before the rendered prompt")
    response_format: Literal["json_schema", "json_object", "text"] | None = Field(
        None, description="ask the endpoint for structured output (json_schema uses the stage's schema)")
    decoding_profile: Literal["compact", "full"] | None = Field(
        None, description="the schema structured output sends: compact = the stage's response_schema (a smaller "
                          "decoding profile for small local models), full = the stage's schema (the whole contract); "
                          "unset = compact for embedded, full for every other provider")
    schema_max_string: int | None = Field(
        None, ge=0, description="cap every string's maxLength in the schema sent to the model (validation keeps "
                                "the real schema); unset = 200 for embedded, no cap otherwise; 0 = no cap")
    schema_max_items: int | None = Field(
        None, ge=0, description="cap every array's maxItems in the schema sent to the model (minItems kept); "
                                "unset = 4 for embedded, no cap otherwise; 0 = no cap")
    schema_text_chars: str | None = Field(
        None, description="characters a free-text string may use in the schema sent to the model, as a regex "
                          "character class body (e.g. \"A-Za-z0-9 ,.'-\"); unset = plain prose for embedded (no "
                          "markup, links or braces), none otherwise; '' = no restriction")
    schema_fit_max_tokens: bool | None = Field(
        None, description="shrink the string cap until the capped schema's worst case fits in max_tokens; "
                          "unset = on for embedded, off otherwise")
    one_shot: str | None = Field(
        None, description="example answer appended to the system prompt: literal text, 'auto' (built from the "
                          "schema sent to the model) or 'none'; unset = auto for embedded with a schema")


class LimitsAndRetries(Strict):
    """How hard the endpoint is driven and what happens when it fails: limits, retries, fallback models, the circuit breaker (teachers/managed.py)."""

    decides_answer: ClassVar[bool] = False  # except the model chain (marked per field)

    max_concurrency: int | None = Field(None, ge=1, description="cap on requests in flight for this teacher")
    models: list[str] | None = Field(
        None, json_schema_extra=WHO_ANSWERS,
        description="ordered model chain on this endpoint: the first answers, the rest are fallbacks")
    fallback_models: list[str] | None = Field(
        None, json_schema_extra=WHO_ANSWERS, description="models tried in order when `model` still fails after its retries")
    requests_per_minute: float | None = Field(None, gt=0, description="cap on requests per minute, per model")
    input_tokens_per_minute: float | None = Field(
        None, gt=0, description="cap on prompt tokens per minute, per model (estimated from the prompt's length)")
    output_tokens_per_minute: float | None = Field(
        None, gt=0, description="cap on completion tokens per minute, per model (estimated from recent answers)")
    max_retries: int | None = Field(
        None, ge=0, description="retries per model on 429, 5xx, timeouts and connection errors (default 4)")
    retry_initial_s: float | None = Field(
        None, gt=0, description="cap of the first backoff wait in seconds, doubling each retry; each wait is a random "
                                "draw below its cap (full jitter), never under Retry-After (default 1)")
    retry_max_s: float | None = Field(None, gt=0, description="longest backoff wait in seconds (default 60)")
    circuit_window: int | None = Field(
        None, ge=2, description="the circuit breaker judges the last N calls to a model (default 100)")
    circuit_error_rate: float | None = Field(
        None, gt=0, le=1, description="error share over the window that opens the circuit (default 0.5)")


#: teacher.judge when the settings leave it unset: the embedded provider's default model (SmolLM2-135M)
#: rejected 12/12 of its own drafts at temperature 0 and 0.7 — its verdicts are noise
JUDGE_DEFAULT: dict[str, bool] = {"embedded": False}


class Capabilities(Strict):
    """What the teacher can be trusted with; templates and routes see it as `teacher.*` (facts())."""

    judge: bool | None = Field(
        None, description="can this teacher judge drafts (critique)? Templates and routes see it as teacher.judge; "
                          "unset = false for embedded (its default 135M model's verdicts are noise), true otherwise")


class Prices(Strict):
    """What calls cost, for cost per record and --max-cost."""

    decides_answer: ClassVar[bool] = False

    prices: dict[str, Price] | None = Field(
        None, description="price table by model, USD per million tokens ('*' matches any other model)")



# the groups in the order `pocketguide stages`, docs and errors show them; YAML may nest a group's keys under
# its name (teacher: {sampling: {temperature: 0.2}}) or write them flat (teacher: {temperature: 0.2})
TEACHER_GROUPS: dict[str, type[Strict]] = {"endpoint": Endpoint, "local": LocalRuntime, "sampling": Sampling,
                                          "output": OutputShape, "limits": LimitsAndRetries,
                                          "capabilities": Capabilities, "cost": Prices}


class TeacherSettings(Endpoint, LocalRuntime, Sampling, OutputShape, LimitsAndRetries, Capabilities, Prices):
    """How to reach and drive a teacher, in groups (TEACHER_GROUPS). Every field is optional so stages can
    override a few; code reads a group with `settings.group("sampling")` instead of lists of names."""

    @model_validator(mode="before")
    @classmethod
    def _flat_and_keyless(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if any(isinstance(data.get(g), dict) for g in TEACHER_GROUPS):
            data = dict(data)
            for g in TEACHER_GROUPS:
                if isinstance(data.get(g), dict):
                    data.update(data.pop(g))
        if "api_key" in data:
            raise ValueError("api_key is not allowed in stages.yaml — put the key in the environment or .env "
                             "and name the variable with api_key_env")
        return data

    @classmethod
    def group_fields(cls, group: str) -> tuple[str, ...]:
        return tuple(TEACHER_GROUPS[group].model_fields)

    def group(self, group: str) -> dict[str, Any]:
        """The group's fields that are set (None means: leave it to the endpoint's default)."""
        return {k: v for k in self.group_fields(group) if (v := getattr(self, k)) is not None}

    def facts(self) -> dict[str, Any]:
        """What a template or a route may know about the teacher: `teacher.provider`, `.model`, `.judge`."""
        provider = self.provider or "openai"
        judge = self.judge if self.judge is not None else JUDGE_DEFAULT.get(provider, True)
        return {"provider": provider, "model": self.model or self.model_path, "judge": judge}

    def answer_groups(self) -> dict[str, dict[str, Any]]:
        """The set fields that decide what the teacher answers, by group (records' fingerprints use them):
        who answers (endpoint, local weights, model chain), how it samples, what it is asked to write.
        Timeouts, key names, headers, the HTTP client (transport), threads, limits and prices change how a call
        is made, not its answer."""
        out: dict[str, dict[str, Any]] = {}
        for name, model in TEACHER_GROUPS.items():
            for key, info in model.model_fields.items():
                extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
                value = getattr(self, key)
                if value is not None and extra.get("answer", model.decides_answer):
                    out.setdefault(name, {})[key] = value
        return out

    def merged(self, *overrides: "TeacherSettings | None") -> "TeacherSettings":
        data = self.model_dump(exclude_none=True)
        for o in overrides:
            if o is not None:
                data.update(o.model_dump(exclude_none=True))
        return TeacherSettings(**data)
