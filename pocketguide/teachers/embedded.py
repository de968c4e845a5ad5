"""The embedded offline teacher: llama.cpp in-process through xllamacpp, no key, no network.

xllamacpp's `Server` always starts llama.cpp's HTTP server next to the in-process API (on
127.0.0.1 at a random port by default). Nothing here talks to it. To keep it from being reachable
we bind it to a Unix socket inside a fresh 0700 temp folder (so there is no TCP port at all) and
require a random API key that never leaves this process; the in-process calls bypass HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from pocketguide.engine.errors import TeacherConfigError, TeacherError
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.teachers.base import TeacherRequest, TeacherResponse
from pocketguide.teachers.model_files import model_sha256, resolve_model_path, runtime_version
from pocketguide.teachers.registry import provider

log = logging.getLogger(__name__)
DEFAULT_N_CTX = 4096
#: decoding slots when `n_parallel` is unset. More slots decode several sequences in one batch (continuous
#: batching), but on 2 cores they gave no gain: a bare stream did 57.3 vs 56.1 tok/s with 4 slots on an idle
#: box, and the draft stage with 4 slots ran at 5.0 tok/s beside 16.9 with 1 on a shared one
#: (bench/embedded_teacher.py; docs/embedded.md). Set `n_parallel` on a machine with more cores.
DEFAULT_N_PARALLEL = 1


def usable_cores() -> int:
    """The cores this process may run on (affinity aware where the OS says)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """The cores this process may use (its CPU affinity); `teacher.threads` or --threads overrides it.

    Not the load average: read when the teacher starts, a busy minute before (another stage, another
    user) made it pick 1 thread on an idle 2-core box and the draft stage ran at 27–34 tokens/s instead
    of ~57. On a machine shared with other heavy jobs, pin it with --threads.
    """
    return usable_cores()


class Engine:
    """One loaded model: the xllamacpp Server plus a gate that serialises (or bounds) decoding."""

    def __init__(self, path: Path, threads: int, n_ctx: int, n_parallel: int):
        import xllamacpp

        self.path, self.threads, self.n_ctx, self.n_parallel = path, threads, n_ctx, n_parallel
        self._sock_dir = tempfile.mkdtemp(prefix="pocketguide-llama-")  # mode 0700: only this user
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = n_ctx * n_parallel  # llama.cpp splits the context across parallel slots
        params.n_parallel = n_parallel
        params.verbosity = -1  # silent: the library never prints
        params.warmup = False
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.hostnames = [os.path.join(self._sock_dir, "llama.sock")]
        params.api_keys = [secrets.token_hex(24)]
        params.endpoint_slots = False
        params.endpoint_metrics = False
        params.n_threads_http = 1
        started = time.perf_counter()
        try:
            self.server = xllamacpp.Server(params)
        except Exception as exc:  # noqa: BLE001 — llama.cpp load failures come as any exception type
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            raise TeacherConfigError(f"llama.cpp could not load {path}: {exc} — is it a valid GGUF model?") from None
        self.load_s = time.perf_counter() - started
        self.listening_address = str(getattr(self.server, "listening_address", ""))
        self._gate = threading.BoundedSemaphore(n_parallel)
        weakref.finalize(self, shutil.rmtree, self._sock_dir, True)

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """Blocking chat completion; call it from a worker thread (it releases the GIL while decoding)."""
        with self._gate:
            return self.server.handle_chat_completions(body)


_engines: dict[tuple[str, int, int, int], Engine] = {}
_engines_lock = threading.Lock()


def get_engine(path: Path, threads: int, n_ctx: int, n_parallel: int) -> Engine:
    """Load a model once per process and share it between every teacher and stage that uses it."""
    key = (str(path), threads, n_ctx, n_parallel)
    with _engines_lock:
        if key not in _engines:
            _engines[key] = Engine(path, threads, n_ctx, n_parallel)
        return _engines[key]


def _require_runtime() -> str:
    version = runtime_version()
    try:
        import xllamacpp  # noqa: F401
    except ImportError as exc:
        raise TeacherConfigError(f"xllamacpp {version} is installed but does not import ({exc}); "
                                 f'reinstall it with `pip install --force-reinstall "pocketguide[embedded]"`') from None
    return version


def _error_from(answer: dict[str, Any]) -> TeacherError:
    err = answer.get("error") or {}
    etype = str(err.get("type") or "error")
    kind = "context_overflow" if "context" in etype else "bad_request" if err.get("code") == 400 else "runtime"
    hint = " — shorten the prompt or raise teacher.n_ctx" if kind == "context_overflow" else ""
    return TeacherError(kind, f"llama.cpp: {err.get('message') or err}{hint}"[:500], status=err.get("code"))


@provider("embedded", requires=("xllamacpp",), extra="embedded", local=True)
class EmbeddedTeacher:
    """A local GGUF model behind the Teacher interface; decoding runs off the event loop."""

    @staticmethod
    def where(settings: TeacherSettings) -> dict[str, Any]:
        """Which weights the settings pick (teacher.model_path, $POCKETGUIDE_MODEL or the shipped model), by
        file name and size, without loading them: part of every record's fingerprint. A moved file keeps it."""
        try:
            path = resolve_model_path(settings)
        except TeacherConfigError:
            return {"model_file": None}
        return {"model_file": path.name, "bytes": path.stat().st_size}

    def __init__(self, settings: TeacherSettings):
        self.settings = settings
        self.runtime_version = _require_runtime()
        self.model_path = resolve_model_path(settings)
        self.threads = settings.threads or default_threads()
        self.n_ctx = settings.n_ctx or DEFAULT_N_CTX
        self.n_parallel = settings.n_parallel or DEFAULT_N_PARALLEL
        # more requests in flight than decoding slots only queue up inside llama.cpp
        self.max_concurrency = min(settings.max_concurrency or self.n_parallel, self.n_parallel)
        self.model_id = self.model_path.name
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = get_engine(self.model_path, self.threads, self.n_ctx, self.n_parallel)
        return self._engine

    def load(self) -> None:
        """Load the model now (a worker that serves this teacher loads it once, when it starts)."""
        _ = self.engine

    def describe(self) -> dict[str, Any]:
        return {"provider": "embedded", "runtime": "xllamacpp", "runtime_version": self.runtime_version,
                "model": self.model_id, **self.cache_identity(), "model_size": self.model_path.stat().st_size,
                "threads": self.threads, "n_ctx": self.n_ctx, "n_parallel": self.n_parallel}

    def cache_identity(self) -> dict[str, Any]:
        """What, besides the request, decides the answer: the exact weights and the runtime."""
        return {"model_path": str(self.model_path), "model_sha256": model_sha256(self.model_path),
                "runtime_version": self.runtime_version}

    def body(self, request: TeacherRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": request.messages, "cache_prompt": True}
        for name in ("temperature", "top_p", "max_tokens", "seed", "response_format", "repeat_penalty",
                     "repeat_last_n"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        body.update(self.settings.extra_body or {})
        body.update(request.extra_body)
        return body

    async def generate(self, request: TeacherRequest) -> TeacherResponse:
        body = self.body(request)
        engine = await asyncio.to_thread(lambda: self.engine)  # the first call loads the model
        started = time.perf_counter()
        try:
            answer = await asyncio.to_thread(engine.chat, body)
        except ValueError as exc:  # xllamacpp raises ValueError on a malformed request
            raise TeacherError("bad_request", f"llama.cpp rejected the request: {exc}"[:500]) from None
        except Exception as exc:  # noqa: BLE001 — any runtime failure becomes a rejected record
            raise TeacherError("runtime", f"llama.cpp failed: {type(exc).__name__}: {exc}"[:500]) from None
        latency = time.perf_counter() - started
        if not isinstance(answer, dict) or "error" in answer:
            raise _error_from(answer if isinstance(answer, dict) else {"error": {"message": repr(answer)[:200]}})
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise TeacherError("bad_response", f"llama.cpp answered without a message: {str(answer)[:200]}") from None
        usage = answer.get("usage") or {}
        return TeacherResponse(
            text=text or "", finish_reason=choice.get("finish_reason"), model=self.model_id, latency_s=latency,
            usage={"prompt_tokens": int(usage.get("prompt_tokens") or 0),
                   "completion_tokens": int(usage.get("completion_tokens") or 0),
                   # prompt tokens served from the slot's prompt cache (the shared prefix is not prefilled again)
                   "cached_prompt_tokens": int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)},
            provider="embedded", request_id=str(answer["id"])[:200] if answer.get("id") else None)

    async def aclose(self) -> None:
        # the model stays loaded for the rest of the process: later stages and runs reuse it
        self._engine = None
