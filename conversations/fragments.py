"""The htmx fragments the chat socket sends, one function per kind.

Each renders a partial of templates/conversations/stream.html (or the message partial
the page itself uses), so what a socket swaps in is what a reload would show.
"""

from __future__ import annotations

from django.template.loader import render_to_string

from conversations.generation import Snapshot
from conversations.models import Conversation, Message


def _render(partial: str, context: dict) -> str:
    return render_to_string(f"conversations/stream.html#{partial}", context)


def delta(event: dict) -> str:
    """Escaped text appended to the streaming answer and thinking: the hot path."""
    return _render("delta", event)


def turn(question: Message, answer: Message) -> str:
    return _render("turn", {"question": question, "answer": answer})


def done(answer: Message) -> str:
    return _render("done", {"m": answer})


def catch_up(answer_id: int, snapshot: Snapshot) -> str:
    return _render("catch_up", {"message": answer_id, "snapshot": snapshot})


def accepted(conversation: Conversation, *, new: bool) -> str:
    return _render("accepted", {"conversation": conversation, "new": new})


def error(text: str) -> str:
    return _render("error", {"error": text})


def no_api_key() -> str:
    return _render("no_api_key", {})
