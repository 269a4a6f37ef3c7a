"""Helpers for tests that talk to the chat socket: real ASGI app, real session cookie."""

from __future__ import annotations

import asyncio
import json
import re

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from chatsite.asgi import application
from conversations.relay import generation


# An answer's final state (stream.html#done); a redrawn thread (a new version started)
# also holds finished answers, earlier ones, and is not it.
def send(text="Hello", model=None, conversation="", **extra) -> str:
    """A "send" frame, as the composer's form makes it."""
    return json.dumps({"action": "send", "message": text, "model": model, "conversation": conversation, **extra})


@sync_to_async
def db(fn):
    """Run `fn` (database work) from an async test."""
    return fn()


DONE = re.compile(
    r'\A(?!\s*<div id="messages")[\s\S]*?<article id="msg-(\d+)" class="message assistant status-(?!streaming)(\w+)'
)


def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


async def connect(user=None, path: str = "/ws/chat/", origin: str = "http://127.0.0.1") -> WebsocketCommunicator:
    """A socket as the page opens it: through the origin check and session auth."""
    headers = [(b"origin", origin.encode()), (b"host", b"127.0.0.1")]
    if user is not None:
        headers.append((b"cookie", (await sync_to_async(_session_cookie)(user)).encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def open_socket(user, path: str = "/ws/chat/") -> WebsocketCommunicator:
    socket = await connect(user, path)
    connected, _ = await socket.connect()
    assert connected, f"socket to {path} refused"
    return socket


async def frames_until(socket: WebsocketCommunicator, pattern, timeout: float = 10.0) -> list[str]:
    """Every frame received up to and including the first that matches `pattern`."""
    pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
    frames = []
    while True:
        frame = await socket.receive_from(timeout=timeout)
        frames.append(frame)
        if pattern.search(frame):
            return frames


async def until_done(socket: WebsocketCommunicator, timeout: float = 10.0) -> list[str]:
    """Frames up to the answer's final state. The sidebar update that follows it (every
    socket of the user gets one) is read too, so the next frame is the next event."""
    frames = await frames_until(socket, DONE, timeout)
    sidebar = await socket.receive_from(timeout=timeout)
    assert 'id="conversation-' in sidebar, sidebar
    return frames


@sync_to_async
def reloaded_page(user, conversation_id) -> str:
    """The conversation's page as a reload shows it, from the database."""
    client = Client()
    client.force_login(user)
    return client.get(f"/c/{conversation_id}/").content.decode()


async def no_generation_left(timeout: float = 10.0) -> None:
    """Tests end only when every generation task has finished its bookkeeping."""
    for _ in range(int(timeout / 0.02)):
        if not generation._running:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"generations still running: {list(generation._running)}")
