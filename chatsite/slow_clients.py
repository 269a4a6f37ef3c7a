"""A socket whose client stops reading (a stalled phone link, a suspended laptop) is
dropped, instead of the server buffering frames for it without bound.

Daphne hands every frame to Twisted, which keeps what the client has not read yet in
the connection's write buffer, with no limit and no signal to the application: one
stalled client could hold an answer's every delta, for every answer it watches. So each
socket gets a watcher, registered as the connection's producer (Twisted's own
flow-control hook): Twisted pauses it when more than its buffer size (64 KiB) waits
unread, and resumes it when all was read. While paused, the connection is dropped once
more than SOCKET_SEND_BUFFER_MAX bytes wait (checked at each frame sent), or once the
client has read nothing for SOCKET_STALLED_AFTER seconds (checked once a second). The
page sees an abnormal close (1006), reconnects with its usual backoff, and catches up
on the answer so far (relay/consumer.resync), so nothing is lost; nobody else waits on
it meanwhile. The watcher reads Twisted's write buffer and wraps two Daphne methods:
tests/test_browser_slow_clients.py runs it under the real thing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from twisted.internet.interfaces import IPushProducer  # an interface: installs no reactor
from zope.interface import implementer  # type: ignore[import-untyped]

log = logging.getLogger(__name__)


def waiting(transport: Any) -> int:
    """Bytes written to a Twisted connection and not yet sent (its write buffer)."""
    # FileDescriptor's buffer: dataBuffer from offset, and the chunks not yet joined to it.
    return int(len(transport.dataBuffer) - transport.offset + transport._tempDataLen)


@implementer(IPushProducer)
class StalledClientWatch:
    """One socket's watcher: Twisted calls pause/resume as its write buffer fills and empties."""

    def __init__(self, protocol: Any, previous: Any = None) -> None:
        self.protocol = protocol
        self.previous = previous  # the producer it replaces (the upgraded HTTP channel): told too
        self._check: Any = None  # the pending once-a-second look, while paused
        self._least = 0  # the fewest bytes seen waiting since the client last read
        self._read_at = 0.0  # when the client was last seen reading

    def pauseProducing(self) -> None:
        if self.previous is not None:
            self.previous.pauseProducing()
        if self._check is None:
            self._least, self._read_at = waiting(self.protocol.transport), time.monotonic()
            self._schedule()

    def resumeProducing(self) -> None:  # everything was read
        if self.previous is not None:
            self.previous.resumeProducing()
        self._cancel()

    def stopProducing(self) -> None:  # the connection is closing
        if self.previous is not None:
            self.previous.stopProducing()
        self._cancel()

    def _schedule(self) -> None:
        from twisted.internet import reactor as installed  # the one Daphne installed, running by now

        reactor: Any = installed
        self._check = reactor.callLater(1.0, self._look)

    def _cancel(self) -> None:
        if self._check is not None and self._check.active():
            self._check.cancel()
        self._check = None

    def _look(self) -> None:
        self._check = None
        now, size = time.monotonic(), waiting(self.protocol.transport)
        if size < self._least:  # it read something since the last look
            self._least, self._read_at = size, now
        if now - self._read_at >= settings.SOCKET_STALLED_AFTER:
            self.drop(f"nothing read for {now - self._read_at:.0f} s", size)
        elif not self.sent():
            self._schedule()

    def sent(self) -> bool:
        """After each frame: too much waits unread? Then the socket is dropped (True)."""
        size = waiting(self.protocol.transport)
        if size > settings.SOCKET_SEND_BUFFER_MAX:
            self.drop("too much unread", size)
            return True
        return False

    def drop(self, why: str, size: int) -> None:
        self._cancel()
        log.warning("Dropping socket %s: %s (%d bytes unread)", self.protocol.client_addr, why, size)
        self.protocol.dropConnection(abort=True)


def install() -> None:
    """Give every Daphne socket a watcher once it is open. Idempotent."""
    from daphne.ws_protocol import WebSocketProtocol

    if getattr(WebSocketProtocol, "_stalled_client_watch", False):
        return
    on_open, server_send = WebSocketProtocol.onOpen, WebSocketProtocol.serverSend

    def onOpen(self: Any) -> None:
        on_open(self)
        # The HTTP channel the socket was upgraded from is the connection's producer
        # still; a connection takes one, so the watcher takes its place and tells it too.
        previous = getattr(self.transport, "producer", None)
        if previous is not None:
            self.transport.unregisterProducer()
        self._watch = StalledClientWatch(self, previous)
        self.transport.registerProducer(self._watch, True)

    def serverSend(self: Any, content: Any, binary: bool = False) -> None:
        server_send(self, content, binary)
        if (watch := getattr(self, "_watch", None)) is not None and self.transport.producerPaused:
            watch.sent()  # only once over Twisted's buffer size: a cheap test otherwise

    WebSocketProtocol.onOpen = onOpen
    WebSocketProtocol.serverSend = serverSend
    WebSocketProtocol._stalled_client_watch = True
