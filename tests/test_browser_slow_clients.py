"""A socket whose client stops reading mid-answer, against the app under Daphne: the
server drops it instead of buffering for it, and everyone else streams on."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.browser import AppServer, add_key, sign_up
from tests.fakegateway import Reply, Wait, chunk, final, sse

# 24 chunks of 128 KiB: 3 MiB, more than the kernel's socket buffers hold for a client
# that reads nothing, little enough for a page to keep up with.
PIECE = "y" * 131_072
PIECES = 24


@pytest.fixture
def strict_app(tmp_path_factory, module_gateway):
    """The app, dropping a client that has read nothing for 2 s (whatever it left unread)."""
    server = AppServer(tmp_path_factory.mktemp("slow"), module_gateway.base_url)
    server.env.update(SOCKET_SEND_BUFFER_MAX=str(1 << 30), SOCKET_STALLED_AFTER="2", LIVE_RENDERING="0")
    yield server.start()
    server.stop()


def open_socket(server: AppServer, cookie: str, path: str = "/ws/chat/", receive_buffer: int = 0) -> socket.socket:
    """A WebSocket handshake by hand (optionally with a tiny receive buffer)."""
    stalling = socket.socket()
    if receive_buffer:
        stalling.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    stalling.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    stalling.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {server.url}\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += stalling.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return stalling


def send_text(sock: socket.socket, text: str) -> None:
    """One masked text frame (a client must mask)."""
    payload, mask = text.encode(), os.urandom(4)
    header = (
        bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big")
        if len(payload) > 125
        else bytes([0x81, 0x80 | len(payload)])
    )
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def read_until(sock: socket.socket, pattern: bytes, timeout: float = 30) -> bytes:
    """What the server sends (frames and all), up to `pattern`."""
    sock.settimeout(timeout)
    received = b""
    while not re.search(pattern, received[-300_000:]):
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before the pattern came")
        received += data
    return received


def dropped(sock: socket.socket, timeout: float) -> bool:
    """Read what the server sent; True if it ends in a reset or end of stream."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True  # end of stream
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False  # still open: the server is waiting for us


def test_a_client_that_stops_reading_is_dropped_and_the_others_stream_on(page, strict_app, module_gateway):
    release = threading.Event()
    parts = [sse(chunk("Start ")), Wait(release), *(sse(chunk(PIECE)) for _ in range(PIECES)), sse(chunk(" THE END"))]
    module_gateway.queue(Reply(parts=[*parts, final()]))
    sign_up(page, strict_app)
    add_key(page, strict_app, "Personal", "sk_live_0123456789abcdef")
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
    model = page.locator("#model-select").input_value()

    stalling = open_socket(strict_app, cookie, receive_buffer=4096)
    send_text(stalling, json.dumps({"action": "send", "message": "Much", "model": model, "conversation": ""}))
    conversation = re.search(rb'data-url="/c/(\d+)/"', read_until(stalling, rb'data-url="/c/\d+/"')).group(1)
    # Another socket on the same conversation, reading as a page does.
    reader = open_socket(strict_app, cookie, f"/ws/chat/{conversation.decode()}/")
    read_until(reader, b"Start ")
    release.set()  # 3 MiB follow; the stalling socket reads none of it from now on

    received = read_until(reader, rb"status-complete")  # the answer's final state
    assert received.count(b"y") >= len(PIECE) * PIECES and b"THE END" in received
    log = Path(strict_app.log.name)
    deadline = time.monotonic() + 30
    while "Dropping socket" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    drops = re.findall(r"Dropping socket \['127.0.0.1', (\d+)\]: nothing read for \d s", log.read_text())
    assert drops == [str(stalling.getsockname()[1])]  # that one only: the reader read on
    assert dropped(stalling, timeout=10)  # what was buffered, then the end: not held open
    for sock in (stalling, reader):
        sock.close()
