"""A raw HTTP/1.1 server for client tests on real sockets: an asyncio server in the test's own loop that
answers each request with the next scripted bytes."""

from __future__ import annotations

import asyncio
from typing import Any


class ScriptedServer:
    """Answers each request with the next scripted bytes (None: hang; b"": close without answering; (bytes,
    "close"): answer, then close the connection); `seen` keeps (connection number, head, body) per request.
    `async with` gives the port."""

    def __init__(self, *answers: bytes | tuple[bytes, str] | None, ssl: Any = None):
        self.answers, self.ssl = list(answers), ssl
        self.seen: list[tuple[int, str, bytes]] = []
        self.connections = 0

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        return self.server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = int(next(line.split(":")[1] for line in head.split("\r\n")
                                  if line.lower().startswith("content-length")))
                self.seen.append((conn, head, await reader.readexactly(length)))
                reply = self.answers.pop(0)
                if reply is None:
                    await asyncio.sleep(30)
                if not reply:
                    break
                writer.write(reply[0] if isinstance(reply, tuple) else reply)
                await writer.drain()
                if isinstance(reply, tuple):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
