"""A fault-injecting S3 endpoint for tests: a small asyncio HTTP proxy on loopback in front of the moto server.

Clients reach it as they reach any S3 (``AWS_ENDPOINT_URL`` or ``--endpoint-url``); it forwards each request
to the real endpoint and, at a seeded rate, injects instead one of the faults object storage shows under load:

* ``503``: ``503 SlowDown`` (throttling), without forwarding;
* ``500``: ``500 InternalError``, without forwarding;
* ``reset``: the connection closed without an answer, without forwarding;
* ``truncate``: the real answer's headers with half its body, then the connection closed (GETs with a body);
* ``slow``: the real answer after ``slow_s`` seconds.

Faults are transient: the same request (method, target and byte range) never gets more than ``max_streak``
faults in a row, so a client that retries, as every S3 client should, always gets through in the end. Half
the faults on GETs are truncations, the others are drawn evenly.

``delays`` holds every request of an operation (``"LIST"``, ``"PUT"``, ``"GET"``, ``"PUT part"``, ...) that many
seconds, e.g. to kill a client in the middle of a listing; a held request whose client went away is dropped, never
forwarded. Permanent faults are rules: ``deny`` answers ``403 AccessDenied`` to every request whose path contains one of
its markers, and ``reset_parts`` resets every multipart ``UploadPart`` of a key containing one of its markers
from that part number on. ``counts`` records what was injected, by kind, and ``requests`` how many were seen.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

__all__ = ["FAULT_KINDS", "FaultyS3"]

FAULT_KINDS = ("503", "500", "reset", "truncate", "slow")
_ERRORS = {"503": (b"503 Slow Down", b"SlowDown", b"Please reduce your request rate."),
           "500": (b"500 Internal Server Error", b"InternalError", b"We encountered an internal error."),
           "403": (b"403 Forbidden", b"AccessDenied", b"Access Denied")}


@dataclass
class FaultyS3:
    """The proxy; :meth:`start` it (it runs in a thread of its own) and give clients :attr:`endpoint_url`."""

    upstream: str
    rate: float = 0.1
    seed: int = 0
    kinds: tuple[str, ...] = FAULT_KINDS
    slow_s: float = 0.3
    max_streak: int = 2
    deny: tuple[str, ...] = ()
    reset_parts: dict[str, int] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    requests: Counter = field(default_factory=Counter)  # by method and S3 operation ("GET", "PUT part", ...)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._streaks: Counter = Counter()
        parsed = urlsplit(self.upstream)
        self._upstream = (parsed.hostname, parsed.port)
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._socket = socket.socket()  # bound now and served by start(): no other process can take the port
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.in_flight = 0  # requests received and not yet answered or dropped

    def start(self) -> FaultyS3:
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, sock=self._socket))
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True, name="faulty-s3")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"the fault-injecting S3 proxy did not start on port {self.port}")
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(10)
        self._loop.close()

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self.rate = rate

    @property
    def injected(self) -> int:
        return sum(self.counts.values())

    # -- one client connection, many requests (keep-alive) ------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                method, target, headers = _parse_head(head)
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await _read_body(reader, headers)
                operation = _operation(method, target)
                fault = self._fault(operation, method, target, headers.get("range", ""))
                self.in_flight += 1
                try:
                    if operation in self.delays and await _client_left(reader, self.delays[operation]):
                        return  # the client died while held: its request is never forwarded, as S3 never commits it
                    if not await self._answer(writer, fault, method, head, body):
                        return
                finally:
                    self.in_flight -= 1
        except (ConnectionError, asyncio.CancelledError):  # a client gone, or the proxy stopping
            return
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, fault: str | None, method: str, head: bytes,
                      body: bytes) -> bool:
        """Answer one request, with ``fault``; False when that closed the connection."""
        if fault == "reset":
            writer.transport.abort()
            return False
        if fault in _ERRORS:
            writer.write(_error_response(fault))
            await writer.drain()
            return True
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        response_head, response_body = await self._forward(head, body, method)
        if fault == "truncate":
            writer.write(response_head + response_body[: len(response_body) // 2])
            await writer.drain()
            writer.transport.abort()
            return False
        writer.write(response_head + response_body)
        await writer.drain()
        return True

    def _fault(self, operation: str, method: str, target: str, byte_range: str) -> str | None:
        """The fault for this request (None: forward it as it is); counts it."""
        path, query = urlsplit(target).path, parse_qs(urlsplit(target).query)
        part = int(query["partNumber"][0]) if "partNumber" in query else None
        request = (method, target, byte_range)
        with self._lock:
            self.requests[operation] += 1
            if any(marker in path for marker in self.deny):
                fault = "403"
            elif part is not None and any(marker in path and part >= first
                                          for marker, first in self.reset_parts.items()):
                fault = "reset"
            elif self._streaks[request] < self.max_streak and self._random.random() < self.rate:
                others = [k for k in self.kinds if k != "truncate"]
                truncate = method == "GET" and "truncate" in self.kinds and self._random.random() < 0.5
                fault = "truncate" if truncate else self._random.choice(others)
                self._streaks[request] += 1
            else:
                self._streaks.pop(request, None)
                return None
            self.counts[fault] += 1
        return fault

    async def _forward(self, head: bytes, body: bytes, method: str) -> tuple[bytes, bytes]:
        """Send the request upstream on a connection of its own; the response's head and body as received."""
        reader, writer = await asyncio.open_connection(*self._upstream)
        try:
            lines = [line for line in head.split(b"\r\n")[:-2]
                     if not line.lower().startswith((b"connection:", b"expect:"))]
            writer.write(b"\r\n".join([*lines, b"Connection: close", b"", b""]) + body)
            await writer.drain()
            response = await reader.read()
        finally:
            writer.close()
        response_head, _, response_body = response.partition(b"\r\n\r\n")
        kept = [line for line in response_head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
        framed = any(line.lower().startswith((b"content-length:", b"transfer-encoding:")) for line in kept[1:])
        if not framed and method != "HEAD":  # a body that ended with the upstream connection: frame it
            kept.append(b"Content-Length: %d" % len(response_body))
        return b"\r\n".join(kept) + b"\r\n\r\n", response_body


async def _client_left(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Wait ``seconds``; True as soon as the client closes its connection (a client sends nothing while it
    waits for an answer, so any read that ends is the end)."""
    try:
        return await asyncio.wait_for(reader.read(1), timeout=seconds) == b""
    except asyncio.TimeoutError:
        return False


def _operation(method: str, target: str) -> str:
    query = parse_qs(urlsplit(target).query)
    return f"{method} part" if "partNumber" in query else ("LIST" if "list-type" in query else method)


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    """The request body as sent (chunked framing included, to forward it unchanged)."""
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() != "chunked":
        return b""
    raw = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        raw += size_line
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                raw += trailer
            return bytes(raw + b"\r\n")
        raw += await reader.readexactly(size + 2)


def _error_response(kind: str) -> bytes:
    status, code, message = _ERRORS[kind]
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>' + code + b"</Code><Message>" + message
            + b"</Message></Error>")
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body)
