"""Pydantic models of stages.yaml. Strict: an unknown key is an error, never ignored."""

from __future__ import annotations

import fnmatch
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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


class GateSpec(Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    when: dict[str, Any] = Field(default_factory=dict, description="run the gate only when these stage-wide "
                                 "values match, e.g. {teacher.judge: false} (paths under teacher, vars or stage)")


class TemplateVariant(Strict):
    """One entry of a variant template catalog: which file (or inline text), which generator, which parser."""

    id: str
    file: str | None = Field(None, description="template file under the templates folder")
    content: str | None = Field(None, description="the template's text inline, instead of a file")
    mode: str | None = Field(None, description="a registered generator mode (llm, copy, …)")
    parser: str | None = None
    parser_options: dict[str, Any] | None = Field(None, description="options for this template's parser")
    description: str = ""

    @model_validator(mode="after")
    def _file_or_content(self) -> "TemplateVariant":
        if (self.file is None) == (self.content is None):
            raise ValueError(f"template '{self.id}': give either a file or inline content (not both, not neither)")
        return self


class Variants(Strict):
    """Fan-out: every combination of template × model × replicate becomes one child record."""

    templates: list[TemplateVariant] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    replicates: int = Field(1, ge=1)

    @field_validator("templates", mode="before")
    @classmethod
    def _plain_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"id": v.rsplit(".", 1)[0], "file": v} if isinstance(v, str) else v for v in value]
        return value


class RouteCase(Strict):
    mode: str = Field(description="a registered generator mode (llm, copy, …) or skip")
    reason: str | None = Field(None, description="reason code recorded when mode is skip")
    template: str | None = None


class Route(Strict):
    """Choose llm / copy / skip per record from a field of the inputs (or several: `on: [a, b]`)."""

    on: str | list[str] = Field(description="dotted path in the template context, e.g. critique.parsed.verdict; or "
                                            "a list of paths, whose values are joined with '/' into the case key")
    cases: dict[str, RouteCase] = Field(description="case key → case; with several paths a key may use * for any "
                                                    "value of a part (pass/*)")
    default: RouteCase = RouteCase(mode="skip", reason="route_unmatched")

    @property
    def paths(self) -> list[str]:
        return [self.on] if isinstance(self.on, str) else list(self.on)

    @staticmethod
    def key_of(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    def case_for(self, key: str) -> tuple[str | None, RouteCase]:
        """(the case key that matched, the case): an exact key first, then the first wildcard key that fits."""
        if key in self.cases:
            return key, self.cases[key]
        for pattern, case in self.cases.items():
            if "*" in pattern and fnmatch.fnmatchcase(key, pattern):
                return pattern, case
        return None, self.default

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_is_true(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare `on:` key as the boolean True; users mean the field
        if isinstance(data, dict) and True in data and "on" not in data:
            data = dict(data)
            data["on"] = data.pop(True)
        return data

    @field_validator("cases", mode="before")
    @classmethod
    def _short_cases(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {(str(k).lower() if isinstance(k, bool) else str(k)): ({"mode": v} if isinstance(v, str) else v)
                    for k, v in value.items()}
        return value

    @field_validator("default", mode="before")
    @classmethod
    def _short_default(cls, value: Any) -> Any:
        return {"mode": value} if isinstance(value, str) else value


class StageSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    description: str = ""
    inputs: list[str] = Field(default_factory=list, description="upstream stages; the first drives")
    source: str | None = Field(None, description="JSONL file of input records (for a first stage)")
    op: str | None = Field(None, description="whole-dataset operation name (instead of a per-record loop)")
    options: dict[str, Any] = Field(default_factory=dict, description="options of the operation")
    template: str | None = None
    mode: str | None = Field(None, description="a registered generator mode: llm (the teacher), copy, or a "
                                               "plugin's")
    copy_from: str | None = Field(None, description="copy mode: dotted path of the value to pass through")
    parser: str | None = None
    parser_options: dict[str, Any] = Field(default_factory=dict, description="options passed to the parser "
                                           "(validated against the parser's options model)")
    catalog: str | None = Field(None, description="template catalog (CSV or YAML: template_id, active, generator, "
                                "parser, description[, file | content]) that cohort axes and variants pick from")
    role: Literal["generation", "evaluation"] | None = Field(
        None, description="what a catalog stage's templates and models are for: evaluation = judges (every template "
                          "names a parser; models marked for_evaluation), generation (default) = models marked "
                          "for_generation")
    members: str | None = Field(
        None, description="a whole-dataset stage whose records list this stage's records (membership rows: "
                          "data.stage, data.parent_id, data.variant); the stage makes exactly those ids (it is read "
                          "like an input, so it is added to inputs)")
    schema_: str | None = Field(None, alias="schema")
    response_schema: str | None = Field(
        None, description="JSON Schema sent to the teacher as response_format (default: schema), e.g. a smaller "
                          "decoding profile; validation always uses schema")
    response_pins: dict[str, str] = Field(
        default_factory=dict, description="decoding only: the answer's string at this dotted path (e.g. "
                                          "payload.title) must start with this text; `{field}` is filled from the "
                                          "record's data (e.g. '{destination}: '). Validation is unchanged")
    gates: list[GateSpec] = Field(default_factory=list)
    teacher: TeacherSettings | None = None
    variants: Variants | None = None
    id_prefix: str | None = None
    route: Route | None = None
    facets: list[str] = Field(default_factory=list, description="record fields to break pass rates down by")
    vars: dict[str, Any] = Field(default_factory=dict, description="constants available to the template")
    allow_truncated: bool = False

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("gates", mode="before")
    @classmethod
    def _short_gates(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _members_are_read(self) -> "StageSpec":
        # the membership table is read like an input (order, staleness, --fresh downstream), never joined by id
        if self.members is not None and self.members not in self.inputs:
            self.inputs.append(self.members)
        return self

    @property
    def is_operation(self) -> bool:
        return self.op is not None


class ExecutorSpec(Strict):
    """Where a run's work happens: `local` (this process) or a registered executor such as `ray`."""

    name: str = Field("local", description="a registered executor: local (default) or ray (the ray extra)")
    options: dict[str, Any] = Field(default_factory=dict, description="the executor's options, e.g. ray: "
                                    "{address: auto, actors: 4} (validated against the executor's model)")

    @model_validator(mode="before")
    @classmethod
    def _short_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


class PipelineDefaults(Strict):
    name: str = "pipeline"
    data_dir: str = "data/runs"
    templates_dir: str = "templates"
    concurrency: int = Field(16, ge=1)
    teacher: TeacherSettings = TeacherSettings()
    cohort: str | None = Field(None, description="cohort file whose axes fill the stages' variants (see cohort.py); "
                               "the environment variable named by cohort_env overrides it")
    cohort_env: str | None = Field(None, description="environment variable that picks the cohort (a cohort id or "
                                   "file); default DD_COHORT")
    models_catalog: str | None = Field(None, description="models catalog (CSV or YAML: id, for_generation, "
                                       "for_evaluation[, active, description]) that cohort axes pick models from")
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec, description="where the work runs (`executor: "
                                   "ray` or {name: ray, options: {...}}); --executor overrides it")


class PipelineSpec(Strict):
    plugins: list[str] = Field(default_factory=list, description="modules (my_pkg.checks) or files relative to "
                               "this stages.yaml (./local_checks.py) whose decorators register parsers, gates, "
                               "operations, generators")
    pipeline: PipelineDefaults = PipelineDefaults()
    stages: list[StageSpec]

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        from pocketguide.engine.errors import StageError
        from pocketguide.engine.registry import closest

        raise StageError(f"unknown stage '{name}'; {closest(name, [s.name for s in self.stages])}")
