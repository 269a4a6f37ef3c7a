"""The stalled-client rule on its own: when a socket whose client reads nothing is dropped
(tests/test_browser_slow_clients.py drives a real one under Daphne)."""

from __future__ import annotations

from dataclasses import dataclass, field

from chatsite.slow_clients import StalledClientWatch


@dataclass
class Transport:
    """The part of a Twisted connection the watcher reads: its write buffer."""

    dataBuffer: bytes = b""  # Twisted's names
    offset: int = 0
    _tempDataLen: int = 0


@dataclass
class Protocol:
    transport: Transport = field(default_factory=Transport)
    client_addr: tuple = ("127.0.0.1", 5000)
    dropped: bool = False

    def dropConnection(self, abort: bool = False) -> None:
        self.dropped = abort


def test_a_frame_that_leaves_too_much_unread_drops_the_socket(settings):
    settings.SOCKET_SEND_BUFFER_MAX = 1000
    protocol = Protocol()
    watch = StalledClientWatch(protocol)
    protocol.transport._tempDataLen = 1000
    assert not watch.sent() and not protocol.dropped  # at the limit: kept
    protocol.transport.dataBuffer, protocol.transport.offset = b"x" * 600, 500  # 100 of it sent
    protocol.transport._tempDataLen = 950
    assert watch.sent() and protocol.dropped  # 1,050 waiting


def test_a_client_that_reads_a_little_is_not_stalled(settings, monkeypatch):
    settings.SOCKET_SEND_BUFFER_MAX, settings.SOCKET_STALLED_AFTER = 10**9, 2.0
    clock = iter(range(100))
    monkeypatch.setattr("chatsite.slow_clients.time.monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(StalledClientWatch, "_schedule", lambda self: None)  # looks are driven by hand
    protocol = Protocol()
    watch = StalledClientWatch(protocol)
    protocol.transport._tempDataLen = 100_000
    watch.pauseProducing()  # t=0
    for waiting in (90_000, 80_000, 70_000):  # t=1, 2, 3: it reads, slowly
        protocol.transport._tempDataLen = waiting
        watch._look()
    assert not protocol.dropped
    watch._look()  # t=4: nothing read since t=3
    assert not protocol.dropped
    watch._look()  # t=5: nothing read for 2 s
    assert protocol.dropped


def test_everything_read_ends_the_watch(settings, monkeypatch):
    settings.SOCKET_STALLED_AFTER = 2.0
    cancelled = []

    class Timer:
        def active(self):
            return True

        def cancel(self):
            cancelled.append(True)

    monkeypatch.setattr(StalledClientWatch, "_schedule", lambda self: setattr(self, "_check", Timer()))
    watch = StalledClientWatch(Protocol())
    watch.pauseProducing()
    watch.resumeProducing()
    assert cancelled == [True] and watch._check is None
