"""The teacher's opt-in lean HTTP/1.1 client (teachers/wire.py, `transport: lean`) against real sockets:
scripted raw answers from an asyncio server in the test's own loop, and the loopback OpenAI server."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest
from scripted_server import ScriptedServer

from pocketguide.engine.errors import TeacherError
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.teachers.base import TeacherRequest
from pocketguide.teachers.openai_compat import OpenAITeacher
from pocketguide.teachers.wire import LeanWire, WireError, proxy_for
from pocketguide.testing import FakeOpenAI, Reply

OK = json.dumps({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}).encode()


def answer(body: bytes = OK, status: str = "200 OK", headers: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n{headers}\r\n".encode() + body


class RawServer(ScriptedServer):
    """The scripted server; `async with` gives the base URL the lean client is pointed at."""

    async def __aenter__(self) -> str:
        return f"http://127.0.0.1:{await super().__aenter__()}/v1"


def wire(url: str, timeout: float = 5.0, **headers: str) -> LeanWire:
    return LeanWire(url, {"authorization": "Bearer k", **headers}, timeout, timeout)


def test_one_kept_alive_connection_carries_sequential_requests_with_the_fixed_head():
    async def main():
        raw = RawServer(answer(), answer(b'{"n": 2}', headers="x-ratelimit-remaining-requests: 9\r\n"))
        async with raw as url:
            w = wire(url, **{"x-title": "t"})
            first = await w.post("/chat/completions", {"model": "m", "messages": []})
            second = await w.post("/chat/completions", {"model": "m", "n": 2})
            await w.aclose()
        return raw, first, second

    raw, first, second = asyncio.run(main())
    assert (first.status, json.loads(first.content)) == (200, json.loads(OK))
    assert second.headers["x-ratelimit-remaining-requests"] == "9" and second.content == b'{"n": 2}'
    assert raw.connections == 1 and [c for c, _, _ in raw.seen] == [1, 1]
    head, body = raw.seen[1][1], raw.seen[1][2]
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert json.loads(body) == {"model": "m", "n": 2} and f"content-length: {len(body)}\r\n" in head
    assert head.split("host: 127.0.0.1:")[1].split("\r\n")[0].isdigit()  # a non-default port is in Host
    assert "authorization: Bearer k\r\n" in head and "x-title: t\r\n" in head


def test_chunked_gzip_interim_and_close_delimited_answers_are_read():
    chunked = (b"HTTP/1.1 100 Continue\r\n\r\n"  # an interim answer first
               b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
               b"5;ext=1\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\nx-trailer: y\r\n\r\n")
    zipped = gzip.compress(b'{"z": true}')
    gz = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(zipped) + zipped
    old = b'HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{"old": 1}'  # ends when the server closes

    async def main():
        raw = RawServer(chunked, gz, (old, "close"), answer())
        async with raw as url:
            w = wire(url)
            got = [(await w.post("/x", {})).content for _ in range(4)]
            await w.aclose()
        return raw, got

    raw, got = asyncio.run(main())
    assert got[:3] == [b'{"a": 1}', b'{"z": true}', b'{"old": 1}'] and got[3] == OK
    assert [c for c, _, _ in raw.seen] == [1, 1, 1, 2]  # the close-delimited answer ended its connection


def test_connection_close_and_a_server_closed_idle_connection_open_a_new_one():
    async def main():
        raw = RawServer(answer(headers="connection: close\r\n"), answer(), b"", answer())
        async with raw as url:
            w = wire(url)
            await w.post("/x", {})  # answered, then the server closes: not kept
            await w.post("/x", {})  # new connection, kept
            with pytest.raises((WireError, OSError, EOFError)):
                await w.post("/x", {})  # the server drops it mid-request: an error the caller retries
            await w.post("/x", {})
            await w.aclose()
        return raw

    raw = asyncio.run(main())
    assert [c for c, _, _ in raw.seen] == [1, 2, 2, 3]


def test_an_idle_connection_the_server_closed_is_not_reused():
    async def main():
        raw = RawServer(answer(), answer())
        async with raw as url:
            w = wire(url)
            await w.post("/x", {})
            conn = w._idle[0]
            conn.reader.feed_eof()  # what the transport does when the server closes an idle connection
            await w.post("/x", {})
            await w.aclose()
        return raw

    raw = asyncio.run(main())
    assert [c for c, _, _ in raw.seen] == [1, 2]


def test_broken_answers_and_hangs_are_typed_errors_the_teacher_retries():
    async def main():
        raw = RawServer(b"SPDY/3 200 OK\r\n\r\n", None)
        async with raw as url:
            w = wire(url, timeout=0.3)
            with pytest.raises(WireError, match="HTTP/1.x status line"):
                await w.post("/x", {})
            with pytest.raises(TimeoutError):
                await w.post("/x", {})
            await w.aclose()

    asyncio.run(main())

    async def teacher_call(url):
        t = OpenAITeacher(TeacherSettings(base_url=url, model="m", timeout_s=0.3, transport="lean"))
        try:
            await t.generate(TeacherRequest(messages=[{"role": "user", "content": "x"}]))
        finally:
            await t.aclose()

    async def refused():
        with pytest.raises(TeacherError) as info:
            await teacher_call("http://127.0.0.1:9/v1")  # nothing listens on port 9
        return info.value

    err = asyncio.run(refused())
    assert (err.kind, err.retryable) == ("connection", True)

    async def hang():
        raw = RawServer(None)
        async with raw as url:
            with pytest.raises(TeacherError) as info:
                await teacher_call(url)
        return info.value

    err = asyncio.run(hang())
    assert (err.kind, err.retryable) == ("timeout", True) and "timeout" in str(err)


@pytest.mark.parametrize("transport", ["sdk", "lean"])
def test_headers_extra_headers_replace_ours_whatever_their_case_and_org_project_come_from_the_env(monkeypatch,
                                                                                                  transport):
    monkeypatch.setenv("OPENAI_ORG_ID", "org-1")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-1")
    with FakeOpenAI() as server:
        t = OpenAITeacher(TeacherSettings(base_url=server.base_url, model="m", transport=transport,
                                          extra_headers={"User-Agent": "mine/1", "X-Title": "t"}))
        asyncio.run(_generate(t))
        seen = server.headers_seen[0]
    assert seen["x-title"] == "t"
    if transport == "lean":  # the SDK's client keeps its user-agent over a "User-Agent" spelt so (as on main)
        assert seen["user-agent"] == "mine/1"
    assert (seen["openai-organization"], seen["openai-project"]) == ("org-1", "proj-1")
    assert seen["authorization"].startswith("Bearer ") and seen["content-type"] == "application/json"


async def _generate(t: OpenAITeacher):
    try:
        return await t.generate(TeacherRequest(messages=[{"role": "user", "content": "x"}]))
    finally:
        await t.aclose()


def test_lean_is_opt_in_and_a_proxy_from_the_environment_hands_it_back_to_the_sdk_client(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    url = "http://10.0.0.1:8000/v1"
    default = OpenAITeacher(TeacherSettings(base_url=url, model="m"))
    assert default.wire is None and default.transport == "sdk" and "transport" not in default.describe()
    lean = OpenAITeacher(TeacherSettings(base_url=url, model="m", transport="lean"))
    assert isinstance(lean.wire, LeanWire) and lean.describe()["transport"] == "lean"
    assert proxy_for("https://api.example.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    assert proxy_for("https://api.example.com/v1") == "http://proxy.local:3128"
    assert proxy_for("http://127.0.0.1:8000/v1") is None  # plain http: HTTPS_PROXY does not apply
    monkeypatch.setenv("NO_PROXY", "api.example.com")
    assert proxy_for("https://api.example.com/v1") is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.local:3128")
    proxied = OpenAITeacher(TeacherSettings(base_url=url, model="m", transport="lean"))
    assert proxied.wire is None and proxied.transport == "sdk" and "proxy" in proxied.describe()["transport"]
    monkeypatch.setenv("NO_PROXY", "10.0.0.1")
    assert isinstance(OpenAITeacher(TeacherSettings(base_url=url, model="m", transport="lean")).wire, LeanWire)


def test_both_transports_send_the_same_request_and_read_the_same_answers():
    replies = [Reply(text="one"), Reply(status=429, error="slow", headers={"retry-after": "2"})]
    got = {}
    for transport in ("sdk", "lean"):
        answers = iter(replies)
        with FakeOpenAI(lambda req: next(answers)) as server:
            t = OpenAITeacher(TeacherSettings(base_url=server.base_url, model="m", transport=transport,
                                              extra_headers={"X-Team": "guides"}))
            assert t.transport == transport
            ok = asyncio.run(_generate(t))
            t = OpenAITeacher(TeacherSettings(base_url=server.base_url, model="m", transport=transport))
            with pytest.raises(TeacherError) as limited:
                asyncio.run(_generate(t))
            seen = server.headers_seen[0]
            got[transport] = (ok.text, ok.finish_reason, ok.usage, limited.value.kind, limited.value.status,
                              limited.value.headers, seen["authorization"], seen["x-team"], server.requests[0])
    assert got["sdk"] == got["lean"]
    assert got["lean"][3:7] == ("rate_limit", 429, {"retry-after": "2"}, "Bearer sk-no-key-needed")


def test_tls_endpoints_keep_their_connections_and_an_untrusted_certificate_is_a_connection_error(tmp_path):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp_path / "key.pem",
                    "-out", tmp_path / "cert.pem", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    trusted = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))

    async def main():
        raw = RawServer(*[answer(b'{"n": %d}' % i) for i in range(6)])
        raw.server = await asyncio.start_server(raw._serve, "127.0.0.1", 0, ssl=served)
        port = raw.server.sockets[0].getsockname()[1]
        got = []
        for host in ("localhost", "127.0.0.1"):  # the name and the address are both in the certificate
            w = LeanWire(f"https://{host}:{port}/v1", {}, 5.0, 5.0, ssl_context=lambda: trusted)
            got += [(await w.post("/chat/completions", {})).content for _ in range(3)]
            await w.aclose()
        untrusted = LeanWire(f"https://localhost:{port}/v1", {}, 5.0, 5.0)  # the default CA bundle
        with pytest.raises(ssl.SSLCertVerificationError):
            await untrusted.post("/chat/completions", {})
        teacher = OpenAITeacher(TeacherSettings(base_url=f"https://localhost:{port}/v1", model="m",
                                                transport="lean"))
        with pytest.raises(TeacherError) as info:
            await _generate(teacher)
        assert (info.value.kind, info.value.retryable) == ("tls", False) and "SSL_CERT_FILE" in str(info.value)
        raw.server.close()
        return raw, got

    raw, got = asyncio.run(main())
    assert got == [b'{"n": %d}' % i for i in range(6)] and [c for c, _, _ in raw.seen] == [1, 1, 1, 2, 2, 2]


def test_a_stage_override_keeps_the_pipelines_transport_and_unset_means_the_sdk_client():
    pipeline = TeacherSettings(transport="lean", model="m")
    assert pipeline.merged(TeacherSettings(temperature=0.2)).transport == "lean"
    assert pipeline.merged(TeacherSettings(transport="sdk")).transport == "sdk"
    assert "transport" not in str(pipeline.answer_groups())  # how a call is made, not its answer
    with pytest.raises(ValueError, match="transport"):
        TeacherSettings(transport="curl")
