"""The sidebar: a user's conversations, a page at a time (search is in search.py).

Pages are keyset pages, newest first by (updated_at, id), so each costs one indexed
query however many conversations a user has (the index `conversation_sidebar_page`),
and a conversation that moves meanwhile is neither skipped nor shown twice by offsets.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.urls import reverse

from conversations.models import Conversation

if TYPE_CHECKING:
    from django.contrib.auth.models import User

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LARGEST_ID = 2**63 - 1


def cursor(conversation: Conversation) -> str:
    delta = conversation.updated_at - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}_{conversation.pk}"


def _parse_cursor(text: str) -> tuple[datetime, int]:
    """ValueError for anything cursor() could not have written: numbers too big for a
    date or a 64-bit id would overflow (into a 500) instead of finding nothing."""
    micros, sep, pk = text.partition("_")
    if not sep or not micros.lstrip("-").isdigit() or not pk.isdigit():
        raise ValueError(text)
    number = int(pk)
    if number > LARGEST_ID:
        raise ValueError(text)
    try:
        return EPOCH + timedelta(microseconds=int(micros)), number
    except OverflowError:
        raise ValueError(text) from None


def page(user: User, after: str = "") -> dict[str, Any]:
    """One page of the sidebar: {"conversations": [...], "next_page": URL or None}.

    Raises ValueError for a cursor that can't be read.
    """
    size = settings.SIDEBAR_PAGE_SIZE
    conversations = (
        Conversation.objects.filter(user=user).only("id", "title", "updated_at").order_by("-updated_at", "-id")
    )
    if after:
        when, pk = _parse_cursor(after)
        # (updated_at, id) < (when, pk), written so the index serves it as a range.
        conversations = conversations.filter(updated_at__lte=when).exclude(updated_at=when, id__gte=pk)
    rows = list(conversations[: size + 1])
    next_page = None
    if len(rows) > size:
        rows = rows[:size]
        next_page = f"{reverse('conversation-page')}?after={cursor(rows[-1])}"
    return {"conversations": rows, "next_page": next_page}
