"""The openai SDK's HTTP stack on asyncio's own sockets: a network backend for httpcore.

The SDK's client (httpx2, or httpx on an older SDK) sends through httpcore's connection pool, which speaks
HTTP/1.1 with h11 over a pluggable "network backend". Its default, anyio, costs per request: a cancel scope
and a timer around every read and write, and the request's head and body in two socket sends (two
wake-ups of the server). `AsyncioBackend` keeps the same contract (httpcore's typed errors, timeouts, TLS
through `start_tls`) on an asyncio protocol: writes made before the next read leave in one send, and a
read of what has already arrived sets no timer (bench/teacher_throughput.py: about 0.3 ms less client
CPU per request).

`on_asyncio_sockets(client)` puts an SDK http client's default transport on it; proxied URLs (mounts
from the environment) keep theirs."""

from __future__ import annotations

import asyncio
import importlib
import logging
import select
import ssl
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("pocketguide.teachers")

PAUSE_READING_AT = 1 << 22  # 4 MiB of answer not yet read: stop reading from the socket until it is


class _Protocol(asyncio.Protocol):
    """Collects what the socket delivers; wakes the one reader waiting, and a writer waiting to drain."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buffer = bytearray()
        self.closed = False  # the server closed its side, or the connection was lost
        self.error: BaseException | None = None
        self.paused = False  # reading paused: PAUSE_READING_AT bytes wait to be read
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > PAUSE_READING_AT and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake("waiter")

    def eof_received(self) -> bool:
        self.closed = True
        self._wake("waiter")
        return False  # close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed, self.error = True, exc
        self._wake("waiter")
        self._wake("drained")

    def resume_writing(self) -> None:
        self._wake("drained")

    def _wake(self, name: str) -> None:
        future = getattr(self, name)
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self, name: str, timeout: float | None) -> bool:
        """Wait until `name` ("waiter": data or close; "drained": the write buffer drained) is woken; False
        when `timeout` passed first."""
        setattr(self, name, asyncio.get_running_loop().create_future())
        try:
            async with asyncio.timeout(timeout):
                await getattr(self, name)
            return True
        except TimeoutError:
            return False
        finally:
            setattr(self, name, None)


class AsyncioStream:
    """httpcore's AsyncNetworkStream on one connection. Writes are held until the next read (or the next
    turn of the event loop), so a request's head and body leave together."""

    def __init__(self, protocol: _Protocol, hc: Any):
        self._p, self._hc = protocol, hc
        self._pending: list[bytes] = []

    def _flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            if not self._p.transport.is_closing():
                self._p.transport.write(data)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._flush()
        p = self._p
        if not p.buffer and not p.closed:
            if not await p.wait("waiter", timeout):
                raise self._hc.ReadTimeout(f"no answer within {timeout:g} s")
        if p.buffer:
            if len(p.buffer) <= max_bytes:
                data = bytes(p.buffer)
                p.buffer.clear()
            else:
                data = bytes(p.buffer[:max_bytes])
                del p.buffer[:max_bytes]
            if p.paused and len(p.buffer) <= PAUSE_READING_AT:
                p.paused = False
                p.transport.resume_reading()
            return data
        if p.error is not None:
            raise self._hc.ReadError(f"{type(p.error).__name__}: {p.error}")
        return b""  # closed by the server: httpcore decides what that means

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        p = self._p
        if p.closed or p.transport.is_closing():
            raise self._hc.WriteError("the connection is closed")
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(buffer)
        if p.transport.get_write_buffer_size() > 0:  # the socket is not keeping up: wait for it to drain
            self._flush()
            if p.transport.get_write_buffer_size() > p.transport.get_write_buffer_limits()[1]:
                if not await p.wait("drained", timeout):
                    raise self._hc.WriteTimeout(f"could not send within {timeout:g} s")

    async def aclose(self) -> None:
        self._pending.clear()
        self._p.transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> AsyncioStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(self._p.transport, self._p, ssl_context, server_hostname=server_hostname,
                                             ssl_handshake_timeout=timeout)
        except TimeoutError:
            self._p.transport.close()
            raise self._hc.ConnectTimeout(f"no TLS handshake within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:  # SSLCertVerificationError included, as anyio's backend maps it
            self._p.transport.close()
            raise self._hc.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        self._p.transport = transport
        return self

    def get_extra_info(self, info: str) -> Any:
        transport = self._p.transport
        if info == "is_readable":  # asked of idle connections: readable means the server closed it
            if self._p.buffer or self._p.closed or transport.is_closing():
                return True
            sock = transport.get_extra_info("socket")  # a close the event loop has not read yet: ask the kernel
            return sock is not None and _socket_readable(sock.fileno())
        names = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername",
                 "socket": "socket"}
        return transport.get_extra_info(names[info]) if info in names else None


def _socket_readable(fd: int) -> bool:
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class AsyncioBackend:
    """httpcore's AsyncNetworkBackend on asyncio. `hc` is the httpcore module whose errors it raises."""

    def __init__(self, hc: Any):
        self._hc = hc

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> AsyncioStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        stream = await self._connect(loop.create_connection(_Protocol, host, port, local_addr=local), timeout)
        sock = stream._p.transport.get_extra_info("socket")
        for option in socket_options or ():  # asyncio already sets TCP_NODELAY
            sock.setsockopt(*option)
        return stream

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> AsyncioStream:
        loop = asyncio.get_running_loop()
        return await self._connect(loop.create_unix_connection(_Protocol, path), timeout)

    async def _connect(self, opening: Any, timeout: float | None) -> AsyncioStream:
        try:
            async with asyncio.timeout(timeout):
                _, protocol = await opening
        except TimeoutError:
            raise self._hc.ConnectTimeout(f"no connection within {timeout:g} s") from None
        except OSError as exc:
            raise self._hc.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        return AsyncioStream(protocol, self._hc)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def on_asyncio_sockets(client: Any) -> bool:
    """Puts the default transport of an httpx2/httpx AsyncClient (what the SDK's client sends through) on
    AsyncioBackend. False, changing nothing, when that transport is not httpcore's plain connection pool."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    if type(pool).__name__ != "AsyncConnectionPool" or not hasattr(pool, "_network_backend"):
        log.debug("the SDK's http client has no plain httpcore pool (%s): anyio's sockets kept", type(pool).__name__)
        return False
    pool._network_backend = AsyncioBackend(importlib.import_module(type(pool).__module__.split(".")[0]))
    return True
