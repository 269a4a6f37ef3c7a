"""A scriptable fake of the generation gateway, on a real socket.

A stdlib `ThreadingHTTPServer` in a daemon thread on 127.0.0.1 (any free port). Tests
queue `Reply` objects; each request to `{base}/generate/stream` or `{base}/generate`
takes the next one (`generate_reply()` builds an image model's JSON answer). GET
`{base}/files/<name>` serves what a test put in `gateway.files` (images given as URLs),
or the `Reply` put in `gateway.file_replies` (a redirect, a slow body); `gateway.gets`
lists the paths asked for. A streaming reply is written part by part with chunked encoding
and flushed at once, so tests control the exact bytes and timing the client sees:
`Pause` sleeps, `Wait` blocks until the test sets an event, `Cut` drops the connection.

    with FakeGateway() as gw:
        gw.queue(stream_reply(["Hel", "lo"]), error_reply(429, {"detail": "slow down"}))
        ...  # point the client at gw.base_url
"""

from __future__ import annotations

import json
import select
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BASE_PATH = "/api/v1"
ROUTES = (f"{BASE_PATH}/generate/stream", f"{BASE_PATH}/generate")


@dataclass(frozen=True)
class Pause:
    """Sleep between two parts of a streaming reply."""

    seconds: float


@dataclass(frozen=True)
class Wait:
    """Block the reply until the test sets `event` (or `timeout` passes)."""

    event: threading.Event
    timeout: float = 30.0


@dataclass(frozen=True)
class Cut:
    """Close the socket mid-stream: no final chunk, no chunked terminator."""


Part = bytes | Pause | Wait | Cut


@dataclass
class Reply:
    """`parts` set: a chunked event stream. Otherwise `body` with a Content-Length."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    parts: list[Part] | None = None
    delay: float = 0.0  # seconds of silence before the status line (a first-byte timeout)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any  # the parsed body, or None


# --- Building replies ----------------------------------------------------------------


def sse(obj_or_str: dict | list | str, *, event: str | None = None, newline: str = "\n") -> bytes:
    """One SSE event. A dict is sent as JSON; a string is the raw data (one data: line per line)."""
    data = obj_or_str if isinstance(obj_or_str, str) else json.dumps(obj_or_str, ensure_ascii=False)
    lines = [f"event: {event}"] if event is not None else []
    lines += [f"data: {line}" for line in data.split("\n")]
    return "".join(line + newline for line in lines).encode() + newline.encode()


def chunk(text: str, name: str = "output", index: int = 0, **extra: Any) -> dict:
    """A content chunk shaped like the gateway's docs."""
    return {
        "type": "text",
        "name": name,
        "content": text,
        "done": False,
        "index": index,
        "is_final": False,
        **extra,
    }


def final(
    input_tokens: int | None = 24,
    output_tokens: int | None = 512,
    cost_input: str | None = "0.0000018",
    cost_output: str | None = "0.0001536",
    cost_total: str | None = "0.0001554",
    warnings: Iterable[Any] = (),
    *,
    newline: str = "\n",
) -> bytes:
    """The final event. Costs are written into the JSON text literally (e.g. `1.5e-07`)."""

    def number(value: Any) -> str:
        return "null" if value is None else str(value)

    total_tokens = input_tokens + output_tokens if input_tokens is not None and output_tokens is not None else None
    text = (
        '{"final": true, '
        f'"usage": {{"input_tokens": {number(input_tokens)}, '
        f'"output_tokens": {number(output_tokens)}, "total_tokens": {number(total_tokens)}}}, '
        f'"cost": {{"input": {number(cost_input)}, "output": {number(cost_output)}, '
        f'"total": {number(cost_total)}}}, '
        f'"warnings": {json.dumps(list(warnings))}}}'
    )
    return sse(text, newline=newline)


def stream_reply(
    texts: Iterable[str],
    *,
    thinking: Iterable[str] = (),
    final_kwargs: dict | None = None,
    delay: float = 0.0,
) -> Reply:
    """Thinking chunks, then output chunks, then the final chunk."""
    events = [sse(chunk(t, "thinking")) for t in thinking]
    events += [sse(chunk(t)) for t in texts]
    events.append(final(**(final_kwargs or {})))
    parts: list[Part] = []
    for event in events:
        if delay and parts:
            parts.append(Pause(delay))
        parts.append(event)
    return Reply(parts=parts)


def generate_reply(
    output: list[dict] | None = None,
    *,
    input_tokens: int = 12,
    output_tokens: int = 1290,
    cost_input: str = "9E-7",
    cost_output: str = "0.000387",
    cost_total: str = "3.879E-4",
    warnings: Iterable[Any] = (),
    delay: float = 0.0,
) -> Reply:
    """The JSON answer of POST /generate (ASSUMED shape), costs written literally."""
    text = (
        f'{{"output": {json.dumps(output or [])}, '
        f'"usage": {{"input_tokens": {input_tokens}, "output_tokens": {output_tokens}, '
        f'"total_tokens": {input_tokens + output_tokens}}}, '
        f'"cost": {{"input": {cost_input}, "output": {cost_output}, "total": {cost_total}}}, '
        f'"warnings": {json.dumps(list(warnings))}}}'
    )
    return Reply(headers={"Content-Type": "application/json"}, body=text.encode(), delay=delay)


def image_item(content: str, mime_type: str | None = "image/png") -> dict:
    item = {"type": "image", "name": "output", "content": content}
    if mime_type:
        item["mime_type"] = mime_type
    return item


def png_bytes(width: int = 8, height: int = 6, color=(200, 40, 40), fmt: str = "PNG") -> bytes:
    """A small real image (Pillow), in any format Pillow writes."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format=fmt)
    return out.getvalue()


def error_reply(status: int, body: bytes | dict | str, headers: dict[str, str] | None = None) -> Reply:
    """A non-streaming answer: dict -> JSON, str -> plain text, bytes as they are."""
    all_headers: dict[str, str] = {}
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    elif isinstance(body, str):
        body = body.encode()
        all_headers["Content-Type"] = "text/plain; charset=utf-8"
    all_headers.update(headers or {})
    return Reply(status=status, headers=all_headers, body=body)


# --- The server ------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away (e.g. after the final chunk) is normal, not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeGateway:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.files: dict[str, tuple[bytes, str]] = {}  # name -> (body, Content-Type), for GET /files/<name>
        self.file_replies: dict[str, Reply] = {}  # name -> the Reply to GET /files/<name>
        self.gets: list[str] = []  # the paths of GET requests, in order
        self.closed = threading.Event()
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def start(self) -> FakeGateway:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.gateway = self  # type: ignore[attr-defined]
        self._server = server
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}{BASE_PATH}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases replies blocked in Wait
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def _next_reply(self) -> Reply:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
        return stream_reply(["Hello", " world"])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked encoding and keep-alive
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet

    @property
    def gateway(self) -> FakeGateway:
        return self.server.gateway  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self.gateway.gets.append(self.path)
        name = self.path.removeprefix(f"{BASE_PATH}/files/")
        reply = self.gateway.file_replies.get(name) if self.path.startswith(f"{BASE_PATH}/files/") else None
        if reply is not None and reply.parts is None:
            self._send_whole(reply)
        elif reply is not None:
            self._send_stream(reply)
        elif self.path.startswith(f"{BASE_PATH}/files/") and name in self.gateway.files:
            body, content_type = self.gateway.files[name]
            self._send_whole(Reply(headers={"Content-Type": content_type}, body=body))
        else:
            self._send_whole(error_reply(404, {"detail": "Not Found"}))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        self.gateway.requests.append(
            Recorded(
                method="POST",
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                json=parsed,
            )
        )
        if self.path not in ROUTES:
            reply = error_reply(404, {"detail": "Not Found"})
        else:
            reply = self.gateway._next_reply()
        if reply.delay and not self._watch(reply.delay, None):
            return
        if reply.parts is None:
            self._send_whole(reply)
        else:
            self._send_stream(reply)

    def _send_headers(self, status: int, defaults: dict[str, str], headers: dict[str, str]) -> None:
        given = {k.lower() for k in headers}
        merged = {k: v for k, v in defaults.items() if k.lower() not in given} | headers
        self.send_response(status)
        for name, value in merged.items():
            self.send_header(name, value)
        self.end_headers()

    def _send_whole(self, reply: Reply) -> None:
        body = reply.body or b""
        self._send_headers(reply.status, {"Content-Length": str(len(body))}, reply.headers)
        self.wfile.write(body)
        self.wfile.flush()

    def _send_stream(self, reply: Reply) -> None:
        defaults = {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
        }
        self._send_headers(reply.status, defaults, reply.headers)
        self.wfile.flush()
        try:
            for part in reply.parts or []:
                if isinstance(part, Pause):
                    if not self._watch(part.seconds, None):
                        return
                elif isinstance(part, Wait):
                    if not self._watch(part.timeout, part.event):
                        return
                elif isinstance(part, Cut):
                    self._cut()
                    return
                elif part:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self._client_left()

    def _watch(self, seconds: float, event: threading.Event | None) -> bool:
        """Sleep up to `seconds` (less if `event` is set), watching the socket.

        Returns False if the client closed the connection meanwhile.
        """
        deadline = time.monotonic() + seconds
        while not self.gateway._stopping.is_set():
            if event is not None and event.is_set():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.02))
            if readable and self._peer_closed():
                self._client_left()
                return False
        return False

    def _peer_closed(self) -> bool:
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except BlockingIOError:
            return False

    def _client_left(self) -> None:
        self.gateway.closed.set()
        self.close_connection = True

    def _cut(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()
