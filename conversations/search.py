"""Search over a user's conversations: titles, and the text of every message.

Search matches titles (any length) and, from 3 characters, the text of every message
(all versions), through an index on each database: on SQLite an FTS5 table with the
trigram tokenizer (substring matching, case-insensitive), on PostgreSQL a pg_trgm GIN
index under `icontains` (migration 0007). Answers still streaming are left out (they
are indexed once they end). With 5,000 conversations of 4 messages each, a search takes
3 ms (a rare word) to 30 ms (a word in every message) on SQLite, 7 to 100 ms on
PostgreSQL (a common word: every match is rechecked).
"""

from __future__ import annotations

import unicodedata

from django.db import connection
from django.db.models import F, Min, Q, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Greatest, Lower, StrIndex, Substr

from conversations.models import Conversation, Message

FTS_TABLE = "conversations_message_fts"
SEARCH_RESULTS = 30
MIN_TEXT_QUERY = 3  # trigram indexes need three characters
MAX_QUERY = 200
SNIPPET_BEFORE, SNIPPET_LENGTH = 50, 160


def clean_query(text: str) -> str:
    """What was typed, as searched: spaces collapsed, control characters dropped (a NUL
    ended SQLite's FTS5 phrase early, an error; PostgreSQL refuses NUL in text), at
    most MAX_QUERY characters. Format characters (the joiners in emoji) stay."""
    kept = "".join(c for c in text if c.isspace() or unicodedata.category(c) != "Cc")
    return " ".join(kept.split())[:MAX_QUERY]


def _phrase(query: str) -> str:
    """An FTS5 phrase: with the trigram tokenizer, it matches the text as a substring."""
    return '"' + query.replace('"', '""') + '"'


# FTS5 drives these joins (CROSS JOIN keeps it first): SQLite would otherwise probe the
# FTS table once per message row, re-running the whole full-text query each time.
_SQLITE_MATCHES = (
    f"SELECT m.id, m.conversation_id FROM {FTS_TABLE} CROSS JOIN conversations_message m "
    f"ON m.id = {FTS_TABLE}.rowid WHERE {FTS_TABLE} MATCH %s"
)


def _matching_messages(user, query: str):
    """The user's finished messages whose text contains `query` (case-insensitively)."""
    messages = Message.objects.filter(conversation__user=user)
    if connection.vendor == "sqlite":
        return messages.filter(pk__in=RawSQL(f"SELECT id FROM ({_SQLITE_MATCHES})", [_phrase(query)]))
    # PostgreSQL: UPPER(content) LIKE UPPER('%query%'), served by the partial trigram index.
    return messages.filter(content__icontains=query).exclude(status=Message.Status.STREAMING)


def _matching_conversation_ids(user, query: str):
    """For `pk__in`: the conversations with a message containing `query` (the caller
    keeps to the user's own).

    On PostgreSQL the ids are read first, in a query of their own: as a subquery OR'd
    with the title match, the planner scans the table instead of using the index.
    """
    if connection.vendor == "sqlite":
        return RawSQL(f"SELECT conversation_id FROM ({_SQLITE_MATCHES})", [_phrase(query)])
    return list(_matching_messages(user, query).order_by().values_list("conversation_id", flat=True).distinct())


def find(user, query: str) -> dict:
    """{"results": [{"url", "title", "snippet"}], "more_results", "short_query"} for the
    user's conversations whose title or messages contain `query`, most recent first."""
    text_search = len(query) >= MIN_TEXT_QUERY
    matches = Q(title__icontains=query)
    if text_search:
        matches |= Q(pk__in=_matching_conversation_ids(user, query))
    found = list(
        Conversation.objects.filter(user=user)
        .filter(matches)
        .only("id", "title", "updated_at")
        .order_by("-updated_at", "-id")[: SEARCH_RESULTS + 1]
    )
    more = len(found) > SEARCH_RESULTS
    found = found[:SEARCH_RESULTS]
    snippets = _snippets(user, [c.pk for c in found], query) if text_search and found else {}
    results = [{"url": c.get_absolute_url(), "title": c.title, "snippet": snippets.get(c.pk)} for c in found]
    return {"results": results, "more_results": more, "short_query": not text_search}


def _first_matches(user, conversation_ids: list[int], query: str) -> dict[int, int]:
    """The first message that matches in each of these conversations: {conversation id: message id}."""
    if connection.vendor == "sqlite":
        marks = ", ".join(["%s"] * len(conversation_ids))
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT conversation_id, MIN(id) FROM ({_SQLITE_MATCHES}) "
                f"WHERE conversation_id IN ({marks}) GROUP BY conversation_id",
                [_phrase(query), *conversation_ids],
            )
            return dict(cursor.fetchall())
    return dict(
        _matching_messages(user, query)
        .filter(conversation_id__in=conversation_ids)
        .values("conversation_id")
        .annotate(first=Min("id"))
        .values_list("conversation_id", "first")
    )


def _snippets(user, conversation_ids: list[int], query: str) -> dict[int, dict]:
    """A few words around the first match in each conversation (the first message that matches)."""
    firsts = _first_matches(user, conversation_ids, query)
    if not firsts:
        return {}
    rows = (
        Message.objects.filter(pk__in=firsts.values())
        .annotate(at=StrIndex(Lower("content"), Value(query.lower())))
        .annotate(excerpt=Substr("content", Greatest(F("at") - SNIPPET_BEFORE, Value(1)), SNIPPET_LENGTH))
        .values_list("conversation_id", "at", "excerpt")
    )
    snippets = {}
    for conversation_id, at, excerpt in rows:
        cut_before = (at or 0) > SNIPPET_BEFORE + 1
        snippet = _highlight(" ".join(excerpt.split()), query, cut_before=cut_before)
        snippet["cut_after"] = len(excerpt) >= SNIPPET_LENGTH
        snippets[conversation_id] = snippet
    return snippets


def _highlight(excerpt: str, query: str, *, cut_before: bool) -> dict:
    """{"before", "match", "after", "cut_before"}: the template escapes each part and marks the match."""
    folded = excerpt.casefold()
    at = folded.find(query.casefold())
    if at < 0 or len(folded) != len(excerpt):  # not found, or casefolding moved it: no mark
        return {"before": "", "match": "", "after": excerpt, "cut_before": cut_before}
    before = excerpt[:at]
    if cut_before and " " in before:
        before = before[before.index(" ") + 1 :]  # start on a whole word
    return {
        "before": before,
        "match": excerpt[at : at + len(query)],
        "after": excerpt[at + len(query) :],
        "cut_before": cut_before,
    }
