"""Which deltas one socket shows: each exactly once, in order, after its catch-up.

A socket that joins mid-answer asks the generation for the text so far (a CatchUp:
the text and the number of the last delta in it). Deltas that arrive before that reply
are held; once it comes, those it covers are dropped and the rest shown in order. A
delta already shown (its number at or below the last shown) is never shown again.

A delta whose number jumps (one before it was lost: the Redis pub/sub layer drops
messages while its connection is down) is a Gap: it is held like the others and the
socket asks for a catch-up, so the page heals at once instead of showing a hole until
the final render. Pure bookkeeping, one instance per socket: the consumer asks it what
to send.
"""

from __future__ import annotations

from typing import NamedTuple

from conversations.relay import events


class Gap(NamedTuple):
    """A delta came after a missing one: the socket should ask for a catch-up."""

    answer_id: int


class DeltaFilter:
    def __init__(self) -> None:
        self._shown: dict[int, int] = {}  # answer id -> number of the last delta shown
        self._held: dict[int, list[events.Delta]] = {}  # answer id -> deltas awaiting its catch-up

    def started(self, answer_id: int) -> None:
        """The socket drew the answer empty, as it started: every delta is news."""
        self._shown[answer_id] = 0

    def await_catch_up(self, answer_id: int) -> None:
        """The socket asked for the answer's text so far: hold its deltas until it comes."""
        self._held.setdefault(answer_id, [])

    def awaiting(self, answer_id: int) -> bool:
        return answer_id in self._held

    def delta(self, event: events.Delta) -> events.Delta | Gap | None:
        """The delta if the socket should show it now; a Gap if one before it is missing
        (it is held); else None (held, or already shown)."""
        answer_id, seq = event["message"], event["seq"]
        if answer_id in self._held:
            self._held[answer_id].append(event)
            return None
        last = self._shown.get(answer_id)
        if last is not None and seq <= last:
            return None
        if last is not None and seq > last + 1:
            self._held[answer_id] = [event]
            return Gap(answer_id)
        self._shown[answer_id] = seq
        return event

    def caught_up(self, event: events.CatchUp) -> list[events.Delta] | None:
        """The catch-up arrived: the held deltas it does not cover, in order (None: it was
        not asked for, or given up on, so the socket shows nothing of it). If one is
        missing after it too, the rest stay held and `awaiting()` says so: ask again."""
        answer_id = event["message"]
        held = self._held.pop(answer_id, None)
        if held is None:
            return None
        self._shown[answer_id] = event["seq"]
        later: list[events.Delta] = []
        for d in sorted(held, key=lambda d: d["seq"]):
            shown = self.delta(d)
            if shown is not None and not isinstance(shown, Gap):
                later.append(shown)
        return later

    def give_up(self, answer_id: int) -> bool:
        """No catch-up came in time: stop holding. True if one was awaited."""
        return self._held.pop(answer_id, None) is not None

    def forget(self, answer_id: int) -> None:
        """The answer ended: its final state replaces whatever was shown."""
        self._held.pop(answer_id, None)
        self._shown.pop(answer_id, None)
