"""The default transport (the openai SDK's client) on asyncio's own sockets (teachers/sockets.py), against real
sockets: an asyncio server in the test's loop answering with scripted bytes."""

from __future__ import annotations

import asyncio
import json

import pytest
from scripted_server import ScriptedServer as Scripted

from pocketguide.engine.errors import TeacherError
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.teachers.base import TeacherRequest
from pocketguide.teachers.openai_compat import OpenAITeacher
from pocketguide.teachers.sockets import AsyncioBackend, on_asyncio_sockets


def completion(text: str = "hi") -> bytes:
    return json.dumps({"choices": [{"message": {"content": text}, "finish_reason": "stop"}]}).encode()


def answer(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body


async def ask(t: OpenAITeacher, text: str = "x"):
    return await t.generate(TeacherRequest(messages=[{"role": "user", "content": text}]))


def test_the_sdk_client_keeps_one_connection_reads_big_and_chunked_answers_and_reopens_what_the_server_closed():
    big = completion("é" * 150_000)  # several reads of 64 KiB
    chunked = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
               % (len(completion("c")), completion("c")))

    async def main():
        server = Scripted(answer(completion("one")), answer(big), chunked, (answer(completion("last")), "close"),
                          answer(completion("again")))
        async with server as port:
            t = OpenAITeacher(TeacherSettings(base_url=f"http://127.0.0.1:{port}/v1", model="m"))
            pool = t.client._client._transport._pool
            assert isinstance(pool._network_backend, AsyncioBackend)
            texts = [(await ask(t, f"q{i}")).text for i in range(4)]
            texts.append((await ask(t)).text)  # the server closed the idle connection: a new one
            await t.aclose()
        return server, texts

    server, texts = asyncio.run(main())
    assert texts == ["one", "é" * 150_000, "c", "last", "again"]
    assert [c for c, _, _ in server.seen] == [1, 1, 1, 1, 2]
    head, body = server.seen[1][1], server.seen[1][2]
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n") and "authorization: bearer " in head.lower()
    assert json.loads(body) == {"model": "m", "messages": [{"role": "user", "content": "q1"}]}
    assert "x-stainless" not in head.lower()  # the SDK's telemetry headers are left out


def test_hangs_drops_and_refusals_are_typed_retryable_errors():
    async def call(port: int, timeout_s: float = 5.0):
        t = OpenAITeacher(TeacherSettings(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=timeout_s))
        try:
            with pytest.raises(TeacherError) as info:
                await ask(t)
        finally:
            await t.aclose()
        return info.value

    async def main():
        errors = [await call(9)]  # nothing listens on port 9
        for reply, timeout_s in ((None, 0.3), (b"", 5.0)):  # a hang; a connection dropped mid-request
            async with Scripted(reply) as port:
                errors.append(await call(port, timeout_s))
        return errors

    refused, hang, dropped = asyncio.run(main())
    assert (refused.kind, refused.retryable) == ("connection", True)
    assert (hang.kind, hang.retryable) == ("timeout", True)
    assert (dropped.kind, dropped.retryable) == ("connection", True)


def test_tls_keeps_its_connection_and_an_untrusted_certificate_is_a_tls_error_not_retried(tmp_path, monkeypatch):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp_path / "key.pem",
                    "-out", tmp_path / "cert.pem", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    async def main():
        server = Scripted(*[answer(completion(f"t{i}")) for i in range(3)], ssl=served)
        async with server as port:
            url = f"https://localhost:{port}/v1"
            monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))  # trusted: the SDK's CA bundle
            t = OpenAITeacher(TeacherSettings(base_url=url, model="m"))
            texts = [(await ask(t)).text for _ in range(3)]
            await t.aclose()
            monkeypatch.delenv("SSL_CERT_FILE")
            untrusted = OpenAITeacher(TeacherSettings(base_url=url, model="m"))
            with pytest.raises(TeacherError) as info:
                await ask(untrusted)
            await untrusted.aclose()
        return server, texts, info.value

    server, texts, err = asyncio.run(main())
    assert texts == ["t0", "t1", "t2"] and [c for c, _, _ in server.seen] == [1, 1, 1]
    assert (err.kind, err.retryable) == ("tls", False) and "CERTIFICATE_VERIFY_FAILED" in str(err)
    assert "SSL_CERT_FILE" in str(err)  # what to do about it


def test_a_proxied_endpoint_keeps_the_proxy_transport(monkeypatch):
    import httpx2

    monkeypatch.setenv("HTTP_PROXY", "http://proxy.local:3128")
    client = httpx2.AsyncClient()
    assert on_asyncio_sockets(client)  # the default transport: requests that no proxy applies to
    proxied = [t for t in client._mounts.values() if t is not None]
    assert proxied and all(type(t._pool).__name__ == "AsyncHTTPProxy" for t in proxied)
    assert all(not isinstance(getattr(t._pool, "_network_backend", None), AsyncioBackend) for t in proxied)
    assert not on_asyncio_sockets(httpx2.AsyncClient(transport=httpx2.MockTransport(lambda r: None)))


def test_a_fresh_client_starts_no_worker_thread_and_plain_http_loads_no_ca_bundle():
    import threading

    async def main():
        async with Scripted(*[answer(completion(f"s{i}")) for i in range(8)]) as port:
            t = OpenAITeacher(TeacherSettings(base_url=f"http://127.0.0.1:{port}/v1", model="m"))
            before = threading.active_count()
            texts = await asyncio.gather(*(ask(t) for _ in range(8)))  # two shards, all cold
            threads = threading.active_count() - before
            await t.aclose()
            return t, threads, sorted(r.text for r in texts)

    t, threads, texts = asyncio.run(main())
    assert texts == [f"s{i}" for i in range(8)] and len(t._shards) == 2
    assert threads == 0  # the SDK would look its platform up in a worker thread per request of a new client
    assert t._ssl.cert_store_stats()["x509_ca"] == 0  # plain http: a context that trusts nothing, never used
    https = OpenAITeacher(TeacherSettings(base_url="https://10.0.0.1/v1", model="m"))
    assert https._ssl.cert_store_stats()["x509_ca"] > 0  # the SDK's CA bundle
