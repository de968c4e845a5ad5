"""Shared fixtures: an isolated environment, a loopback OpenAI-compatible server, pipeline builders."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable

import pytest

from pocketguide.testing import FakeOpenAI, RateLimit, Reply

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No real keys or endpoints leak in; every test runs in its own folder."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "POCKETGUIDE_MODEL", "OPENROUTER_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def fake_openai(monkeypatch):
    """fake_openai(reply_fn, limit=RateLimit(...)) → a started FakeOpenAI; OPENAI_BASE_URL points at it."""
    servers: list[FakeOpenAI] = []

    def start(reply: Callable[[dict], Reply] | None = None, limit: RateLimit | None = None) -> FakeOpenAI:
        server = FakeOpenAI(reply, limit=limit).start()
        servers.append(server)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        return server

    yield start
    for s in servers:
        s.stop()


def write_pipeline(root: Path, stages_yaml: str, templates: dict[str, str] | None = None,
                   files: dict[str, str] | None = None) -> Path:
    """Write stages.yaml, templates/ and data files under root; return the stages.yaml path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "templates").mkdir(exist_ok=True)
    for name, text in (templates or {}).items():
        p = root / "templates" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    for name, text in (files or {}).items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    path = root / "stages.yaml"
    path.write_text(textwrap.dedent(stages_yaml))
    return path


@pytest.fixture
def pipeline_dir(tmp_path) -> Callable[..., Path]:
    def make(stages_yaml: str, templates=None, files=None, name: str = "proj") -> Path:
        return write_pipeline(tmp_path / name, stages_yaml, templates, files)

    return make
