"""The OpenAI-compatible teacher's HTTP: one JSON POST per call over kept-alive HTTP/1.1 connections.

`LeanWire` speaks just what a chat-completions call needs (a POST with a JSON body; an answer sized by
content-length, chunked, or ended by the server closing; gzip/deflate) straight on asyncio streams,
plain or TLS. Per request it builds one bytes head (the fixed headers are encoded once), makes one
write and reads the answer with two buffered reads: a whole teacher call, the runner's per-record work
included, costs about a quarter of the client CPU it costs on the openai SDK's client, which at 32+
requests in flight is the teacher's ceiling on a small machine (bench/teacher_throughput.py).

It is the teacher's `transport: lean`, an opt-in: the default is the openai SDK's own client
(teachers/openai_compat.py), which the teacher also uses when an HTTP(S)_PROXY / ALL_PROXY from the
environment applies to the endpoint (`proxy_for`: the lean client does not speak to proxies).

It answers with a `WireResponse` (status, lower-cased headers, body) and raises `TimeoutError` when the
per-request timeout runs out, or `WireError` / `OSError` when the connection fails."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit
from urllib.request import getproxies_environment, proxy_bypass_environment

import orjson

log = logging.getLogger("pocketguide.teachers")

HEAD_LIMIT = 1 << 20  # a status line and headers longer than this are a broken answer
MAX_BODY = 1 << 28  # 256 MiB: an answer larger than this is refused rather than held in memory
IDLE_EXPIRY_S = 4.0  # a connection idle this long is closed, not reused (servers often close at 5 s)
MAX_IDLE = 256


class WireError(OSError):
    """The connection failed or the server's answer is not HTTP/1.x we can read."""


@dataclass
class WireResponse:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header's values joined with ", "
    content: bytes

    @property
    def status_code(self) -> int:  # as httpx names it: the teacher reads either kind of answer
        return self.status


def proxy_for(url: str) -> str | None:
    """The proxy the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY) sets for `url`, if any."""
    parts = urlsplit(url)
    proxies = getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    host = parts.hostname or ""
    return None if proxy_bypass_environment(host, proxies) else proxy


class _Conn:
    __slots__ = ("reader", "writer", "loop", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.loop = asyncio.get_running_loop()
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        """Still open on the running loop, nothing unread (the server closed it, or sent stray bytes), fresh."""
        return (self.loop is asyncio.get_running_loop() and not self.writer.is_closing()
                and not self.reader.at_eof() and not self.reader._buffer  # noqa: SLF001  (asyncio has no API)
                and now - self.idle_since < IDLE_EXPIRY_S)

    def close(self) -> None:
        try:
            self.writer.close()
        except RuntimeError:  # its event loop is gone
            pass


class LeanWire:
    """POSTs JSON to one endpoint over a pool of kept-alive connections; the in-flight cap of the caller
    bounds how many there are. Not thread-safe: one event loop at a time (connections made on another
    loop are dropped, not reused)."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout_s: float, connect_s: float,
                 ssl_context: Any = None):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = quote(parts.path.rstrip("/"), safe="/%:@!$&'()*+,;=~")  # as sent: percent-encoded
        self.query = f"?{quote(parts.query, safe='/%:@!$&()*+,;=?~')}" if parts.query else ""
        self.timeout_s, self.connect_s = timeout_s, connect_s
        self._ssl_context = ssl_context
        host = f"[{self.host}]" if ":" in self.host else self.host
        if parts.port and parts.port != (443 if self.tls else 80):
            host += f":{parts.port}"
        fixed = {"host": host, "accept": "application/json", "accept-encoding": "gzip, deflate",
                 "content-type": "application/json", **headers}
        for name, value in fixed.items():
            if any(c in f"{name}{value}" for c in "\r\n\0"):
                raise ValueError(f"header {name!r} holds a line break")
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1", "strict")
        self._idle: list[_Conn] = []
        self._closed = False

    def _ssl(self) -> ssl.SSLContext:
        """Built at the first TLS connection (loading the CA bundle costs ~70 ms); `ssl_context` may be a factory."""
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        elif callable(self._ssl_context):
            self._ssl_context = self._ssl_context()
        return self._ssl_context

    async def post(self, path: str, payload: dict[str, Any]) -> WireResponse:
        body = orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)  # YAML may give extra_body int keys
        target = f"{self.prefix}{path}{self.query}".encode("ascii")
        data = b"".join((b"POST ", target, b" HTTP/1.1\r\n", self._fixed,
                         b"content-length: %d\r\n\r\n" % len(body), body))
        async with asyncio.timeout(self.timeout_s):
            conn = await self._take()
            try:
                conn.writer.write(data)  # one write: head and body leave in one segment when they fit
                response, keep = await _read_response(conn.reader)
            except BaseException:  # a timeout, a cancellation or a broken answer: the connection's state is unknown
                conn.close()
                raise
        if keep and not self._closed and len(self._idle) < MAX_IDLE:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        return response

    async def _take(self) -> _Conn:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the warmest
            if conn.usable(now):
                return conn
            conn.close()
        tls = self._ssl() if self.tls else None
        async with asyncio.timeout(self.connect_s):
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=tls, server_hostname=self.host if tls else None, limit=HEAD_LIMIT)
        return _Conn(reader, writer)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[WireResponse, bool]:
    """One HTTP/1.x answer (interim 1xx answers skipped); True when the connection may be reused."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise WireError(f"the server's answer does not start with an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(parts[1])
        if not 100 <= status < 200:
            break
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise WireError(f"malformed header line in the server's answer: {line[:80]!r}")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (parts[0] != "HTTP/1.0" or "keep-alive" in connection)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"].split(",")[0])
        except ValueError:
            raise WireError(f"bad content-length {headers['content-length'][:40]!r}") from None
        if not 0 <= length <= MAX_BODY:
            raise WireError(f"the answer's content-length {length} is out of bounds (at most {MAX_BODY})")
        body = await reader.readexactly(length)
    elif status in (204, 304):
        body = b""
    else:  # no length given: the body ends when the server closes
        body, keep = await reader.read(MAX_BODY + 1), False
        if len(body) > MAX_BODY:
            raise WireError(f"the answer is larger than {MAX_BODY} bytes")
    encoding = headers.get("content-encoding", "identity").lower().strip()
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            body = zlib.decompress(body, 47 if encoding != "deflate" else 15) if body else body
        except zlib.error:
            if encoding != "deflate":
                raise WireError("the answer's gzip body is corrupt") from None
            body = zlib.decompress(body, -15)  # raw deflate, as some servers send it
    elif encoding not in ("identity", ""):
        raise WireError(f"the answer is encoded with {encoding!r}, which was not asked for")
    return WireResponse(status, headers, body), keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks, total = [], 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise WireError(f"bad chunk size line {line[:40]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the empty line
                pass
            return b"".join(chunks)
        total += size
        if total > MAX_BODY:
            raise WireError(f"the answer is larger than {MAX_BODY} bytes")
        chunk = await reader.readexactly(size + 2)
        chunks.append(chunk[:-2])
