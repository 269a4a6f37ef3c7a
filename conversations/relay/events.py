"""Every message that crosses the channel layer, and the groups they go to.

With Redis these travel between processes, so each is a plain dict; each kind is a
TypedDict here, built by the constructor beside it, so a sender and its handler (the
consumer method named after `type`, e.g. `chat.delta` -> `chat_delta`) read the same
fields. Three kinds of group:

- a conversation's group: every socket showing it (deltas, turns, endings);
- a user's group: every socket of that user (the sidebar; closing at logout);
- a generation's control group: the task relaying one answer, in whichever process
  runs it (stop, and "what have you got so far?").
"""

from __future__ import annotations

import hashlib
from typing import Literal, NotRequired, Protocol, TypedDict, cast

from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured

# --- groups (names: < 100 characters of [A-Za-z0-9._-]) -------------------------------


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def control_group(answer_id: int) -> str:
    return f"generation-{answer_id}"


# --- to the sockets showing a conversation --------------------------------------------


class Turn(TypedDict):
    """A new question and its empty answer (or a new version, the messages redrawn)."""

    type: Literal["chat.turn"]
    conversation: int
    answer: int
    html: str  # rendered once for every socket (fragments.turn_html)


class Formatted(TypedDict):
    """A text's formatted form changing as it streams (relay/live.py)."""

    closed: str  # HTML of blocks that just closed: appended
    open: str | None  # HTML of the open last block: replaces it (None: unchanged)
    raw: str  # arrived since the open block's render: appended as text


class Delta(TypedDict):
    """Text that arrived since the last delta, numbered so a socket drops what it has."""

    type: Literal["chat.delta"]
    message: int
    seq: int
    answer: str
    thinking: str
    answer_html: NotRequired[Formatted]  # live rendering: what the page shows instead
    thinking_html: NotRequired[Formatted]
    thinking_seconds: NotRequired[float]  # once, when the answer starts after thinking
    clear_status: NotRequired[bool]  # a retry notice is out of date


class Status(TypedDict):
    """A notice about the answer that is not text of it ("Trying again in 2 s")."""

    type: Literal["chat.status"]
    message: int
    text: str


class Done(TypedDict):
    """The answer ended, however: each socket swaps in its stored final state."""

    type: Literal["chat.done"]
    message: int
    html: str  # that state, rendered once for every socket (fragments.done_for); "" if it failed


class Thread(TypedDict):
    """Another version was picked: every socket redraws the messages shown."""

    type: Literal["chat.thread"]
    conversation: int


def turn(*, conversation: int, answer: int, html: str) -> Turn:
    return {"type": "chat.turn", "conversation": conversation, "answer": answer, "html": html}


def delta(message: int, seq: int, answer: str, thinking: str) -> Delta:
    return {"type": "chat.delta", "message": message, "seq": seq, "answer": answer, "thinking": thinking}


def status(message: int, text: str) -> Status:
    return {"type": "chat.status", "message": message, "text": text}


def done(message: int, html: str) -> Done:
    return {"type": "chat.done", "message": message, "html": html}


def thread(conversation: int) -> Thread:
    return {"type": "chat.thread", "conversation": conversation}


# --- to one socket ----------------------------------------------------------------------


class FormattedSoFar(TypedDict):
    """A streaming text's formatted form so far (relay/live.py)."""

    closed: list[str]  # the closed blocks' HTML, one piece per render
    open: str  # the open last block's HTML
    raw: str  # arrived since, shown as text


class CatchUp(TypedDict):
    """A generation's text so far, for a socket that joined mid-answer."""

    type: Literal["chat.catch_up"]
    message: int
    seq: int  # the last delta the text includes
    answer: str
    thinking: str
    answer_html: NotRequired[FormattedSoFar]  # live rendering: what a page shows now
    thinking_html: NotRequired[FormattedSoFar]


class CatchUpTimeout(TypedDict):
    """No generation answered a snapshot request in time (a socket sends it to itself)."""

    type: Literal["chat.catch_up_timeout"]
    message: int


def catch_up(message: int, seq: int, answer: str, thinking: str) -> CatchUp:
    return {"type": "chat.catch_up", "message": message, "seq": seq, "answer": answer, "thinking": thinking}


def catch_up_timeout(message: int) -> CatchUpTimeout:
    return {"type": "chat.catch_up_timeout", "message": message}


# --- to a generation's control group -------------------------------------------------


class Stop(TypedDict):
    type: Literal["generation.stop"]


class SnapshotRequest(TypedDict):
    """Answered with a CatchUp sent to `reply_to` (a socket's channel)."""

    type: Literal["generation.snapshot"]
    reply_to: str


def stop() -> Stop:
    return {"type": "generation.stop"}


def snapshot_request(reply_to: str) -> SnapshotRequest:
    return {"type": "generation.snapshot", "reply_to": reply_to}


# --- to every socket of a user (the sidebar, the end of her session) -------------------


class SidebarUpdate(TypedDict):
    """A conversation's item changed (title, generating or not), or is `new`."""

    type: Literal["sidebar.update"]
    conversation: int
    item: NotRequired[str]  # its item, rendered once for every socket (else each renders it)
    new: NotRequired[bool]
    origin: NotRequired[str]  # the socket that started it has drawn it already


class SidebarRemove(TypedDict):
    type: Literal["sidebar.remove"]
    conversation: int


def sidebar_update(conversation: int, *, item: str = "", new: bool = False, origin: str = "") -> SidebarUpdate:
    event: SidebarUpdate = {"type": "sidebar.update", "conversation": conversation}
    if item:
        event["item"] = item
    if new:
        event["new"], event["origin"] = True, origin
    return event


def sidebar_remove(conversation: int) -> SidebarRemove:
    return {"type": "sidebar.remove", "conversation": conversation}


class AccessRevoked(TypedDict):
    """The user logged out (`session` names that session: only its sockets close), or
    was deactivated or deleted (None: every socket of hers closes)."""

    type: Literal["access.revoked"]
    session: str | None


def access_revoked(session_key: str | None = None) -> AccessRevoked:
    return {"type": "access.revoked", "session": None if session_key is None else session_tag(session_key)}


def session_tag(session_key: str) -> str:
    """A session as events name it: never the key itself, which signs in whoever has it
    (events may cross Redis)."""
    return hashlib.sha256(session_key.encode()).hexdigest()


Event = (
    Turn
    | Delta
    | Status
    | Done
    | Thread
    | CatchUp
    | CatchUpTimeout
    | Stop
    | SnapshotRequest
    | SidebarUpdate
    | SidebarRemove
    | AccessRevoked
)


class Layer(Protocol):
    """The channel layer, as the relay uses it: it carries these events (Channels' own
    types say "a dict", which a TypedDict is not)."""

    async def send(self, channel: str, message: Event) -> None: ...
    async def group_send(self, group: str, message: Event) -> None: ...
    async def group_add(self, group: str, channel: str) -> None: ...
    async def group_discard(self, group: str, channel: str) -> None: ...
    async def new_channel(self, prefix: str = "specific.") -> str: ...
    async def receive(self, channel: str) -> dict: ...


def layer() -> Layer:
    """The default channel layer (settings.CHANNEL_LAYERS always defines one)."""
    channel_layer = get_channel_layer()
    if channel_layer is None:
        raise ImproperlyConfigured("CHANNEL_LAYERS has no default layer: the relay needs one.")
    return cast(Layer, channel_layer)
