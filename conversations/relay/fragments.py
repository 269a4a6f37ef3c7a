"""The htmx fragments the chat socket sends, one function per kind.

Each renders a partial of templates/conversations/stream.html (or a partial the page
itself uses), so what a socket swaps in is what a reload would show. The `*_for` and
`*_html` functions read the database: they run off the event loop. What every socket
of a conversation shows alike (a new turn, a finished answer, a sidebar item) is
rendered once by the generation and carried in its event, not once per socket.

Daphne refuses to send a message over WEBSOCKET_MAX_MESSAGE_BYTES (it closes the socket
with 1011): a finished answer, or a redrawn thread, larger than SOCKET_HTML_MAX_BYTES
comes as a fragment that loads it over HTTP instead, and streamed text goes in pieces
of at most TEXT_PER_FRAME characters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import mark_safe

from conversations.costs import budgets
from conversations.forms import SettingsForm
from conversations.models import Conversation, Message
from conversations.relay import events
from conversations.relay.turns import NewTurn


def _render(partial: str, context: Mapping[str, Any]) -> str:
    return render_to_string(f"conversations/stream.html#{partial}", context)


def text_per_frame() -> int:
    """Characters of streamed text one frame may carry: HTML-escaping takes up to 6 bytes
    a character (`"` is `&quot;`), so this many always fit in SOCKET_HTML_MAX_BYTES."""
    return settings.SOCKET_HTML_MAX_BYTES // 6


def _fits(html: str) -> bool:
    """Small enough for one socket message."""
    return len(html.encode()) <= settings.SOCKET_HTML_MAX_BYTES


def delta(event: events.Delta) -> str:
    """What a delta changes on the page: the hot path, formatted here without a template
    (rendering a partial per delta per socket was a tenth of the relay's CPU). The rare
    delta that also carries the thinking time or clears a notice adds a partial.

    Each streaming text (answer, thinking) is three elements, chat.html#live_text: the
    closed blocks (appended to), the open block (replaced), and a tail of plain text
    (appended to; all a delta carries when live rendering is off).
    """
    message = event["message"]
    html = _swaps(message, "thinking", event["thinking"], event.get("thinking_html"))
    html += _swaps(message, "answer", event["answer"], event.get("answer_html"))
    if "thinking_seconds" in event or "clear_status" in event:
        html += _render("delta_extras", event)
    return html


def _swaps(message: int, name: str, text: str, formatted: events.Formatted | None) -> str:
    target = f"msg-{message}-{name}"
    if formatted is None:  # plain text, escaped, appended
        return f'<div hx-swap-oob="beforeend:#{target}-tail">{escape(text)}</div>' if text else ""
    html = ""
    if formatted["closed"]:  # sanitised by rendering.py
        html += f'<div hx-swap-oob="beforeend:#{target}-done">{formatted["closed"]}</div>'
    if formatted["open"] is not None:
        html += (
            f'<div id="{target}-open" class="live-open" hx-swap-oob="true">{formatted["open"]}</div>'
            f'<span id="{target}-tail" class="live-tail" hx-swap-oob="true"></span>'
        )
    if formatted["raw"]:
        html += f'<div hx-swap-oob="beforeend:#{target}-tail">{escape(formatted["raw"])}</div>'
    return html


def status(message_id: int, text: str) -> str:
    return _render("status", {"message": message_id, "text": text})


def _as_started(answer_id: int, model_name: str, conversation_id: int | None = None) -> Message:
    """An answer drawn as it started, not as stored: a fast one may have ended (or
    checkpointed text) by now, and its own deltas and "done" follow."""
    answer = Message(pk=answer_id, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING, model_name=model_name)
    if conversation_id is not None:
        answer.conversation_id = conversation_id
    return answer


def turn_html(turn: NewTurn) -> str:
    """A new turn as every socket shows it; rendered once, when it starts (generation.launch)."""
    if turn.redraw:  # a new version: the messages shown are redrawn
        return thread_for(turn.conversation.pk, turn.answer.pk)
    return turn_for(turn.question, turn.answer.pk, turn.answer.model_name, turn.previous)


def turn_for(question: Message | None, answer_id: int, model_name: str, previous: int | None = None) -> str:
    """The new question and an empty streaming answer, appended to the messages shown.
    `previous` (the answer the question follows) loses its Regenerate button."""
    return _render("turn", {"question": question, "answer": _as_started(answer_id, model_name), "previous": previous})


def thread_for(conversation_id: int, streaming_answer_id: int | None = None) -> str:
    """Every message shown, redrawn (a version was picked, or a new one started): the
    new answer `streaming_answer_id`, if given, drawn as it started."""
    conversation = Conversation.objects.get(pk=conversation_id)
    thread = conversation.thread()
    for i, m in enumerate(thread):
        if m.pk == streaming_answer_id:
            started = _as_started(m.pk, m.model_name, m.conversation_id)
            for name in ("version_index", "version_count", "prev_version_id", "next_version_id"):
                setattr(started, name, getattr(m, name))
            thread[i] = started
    answers = [m for m in thread if m.role == Message.Role.ASSISTANT]
    context = {
        "conversation": conversation,
        "thread": thread,
        "last_answer_id": answers[-1].pk if answers else None,
        "generating": any(m.is_streaming for m in answers),
    }
    html = _render("thread", context)
    if _fits(html):
        return html
    # The page loads the messages over HTTP, but for the new answer: its deltas follow now.
    ids = [m.pk for m in thread]
    tail = thread[ids.index(streaming_answer_id) :] if streaming_answer_id in ids else []
    return _render("thread_to_load", {**context, "tail": tail})


def done_for(answer_id: int) -> str:
    answer = (
        Message.objects.select_related("cost_log", "conversation__user")
        .prefetch_related("attachments")
        .get(pk=answer_id)
    )
    answer.conversation.tree().annotate([answer])
    context = {
        "m": answer,
        "last_answer_id": answer.pk,
        # Each answer changes the header's total and maybe the budget notice.
        "totals": answer.conversation.cost_totals(),
        "budget": budgets.state(answer.conversation.user),
    }
    html = _render("done", context)
    # Too large: its start, and the page loads the rest over HTTP.
    return html if _fits(html) else _render("done", {**context, "to_load": True})


def catch_up(event: events.CatchUp) -> list[str]:
    """The text so far, replacing what the page shows, in frames that each fit: the first
    replaces, the rest append."""
    if "answer_html" in event and "thinking_html" in event:
        return _formatted_catch_up(event["message"], event["answer_html"], event["thinking_html"])
    answer_id, answer, thinking = event["message"], event["answer"], event["thinking"]
    n = text_per_frame()
    pieces: list[tuple[str, str]] = []  # (answer, thinking) of at most n characters together, thinking first
    while answer or thinking or not pieces:
        t, thinking = thinking[:n], thinking[n:]
        a, answer = answer[: n - len(t)], answer[n - len(t) :]
        pieces.append((a, t))
    (a, t), rest = pieces[0], pieces[1:]
    frames = [_render("catch_up", {"message": answer_id, "answer": {"tail": a}, "thinking": {"tail": t}})]
    return frames + [delta(events.delta(answer_id, 0, a, t)) for a, t in rest]


def _formatted_catch_up(answer_id: int, answer: events.FormattedSoFar, thinking: events.FormattedSoFar) -> list[str]:
    """The closed blocks that fit, the open blocks and the start of the plain tails in the
    first frame (so a page never shows an open block without what precedes it), then
    the closed blocks left over, and the rest of the tails, appended in frames that fit.
    (A tail is long once a text gave up formatting: live.OPEN_BLOCK_MAX_CHARS.)"""
    budget = settings.SOCKET_HTML_MAX_BYTES // 4
    batches = {name: _batches(text["closed"], budget) for name, text in (("thinking", thinking), ("answer", answer))}
    head, n = text_per_frame() // 8, text_per_frame()
    context = {
        "message": answer_id,
        "answer": {
            "done": mark_safe(batches["answer"].pop(0)),
            "open": mark_safe(answer["open"]),
            "tail": answer["raw"][:head],
        },
        "thinking": {
            "done": mark_safe(batches["thinking"].pop(0)),
            "open": mark_safe(thinking["open"]),
            "tail": thinking["raw"][:head],
        },
    }
    frames = [_render("catch_up", context)]
    for name, rest in batches.items():
        frames += [f'<div hx-swap-oob="beforeend:#msg-{answer_id}-{name}-done">{batch}</div>' for batch in rest]
    for i in range(head, len(thinking["raw"]), n):
        frames.append(delta(events.delta(answer_id, 0, "", thinking["raw"][i : i + n])))
    for i in range(head, len(answer["raw"]), n):
        frames.append(delta(events.delta(answer_id, 0, answer["raw"][i : i + n], "")))
    return frames


def _batches(blocks: list[str], budget: int) -> list[str]:
    """Blocks joined into runs of at most `budget` characters (a larger block alone); at least one run."""
    runs = [""]
    for block in blocks:
        if runs[-1] and len(runs[-1]) + len(block) > budget:
            runs.append("")
        runs[-1] += block
    return runs


def accepted(conversation: Conversation, *, new: bool) -> str:
    context: dict[str, Any] = {"conversation": conversation, "new": new}
    if new:
        context["settings_form"] = SettingsForm.for_conversation(conversation)
        context["sidebar_item"] = mark_safe(sidebar_placed(sidebar_item(conversation, generating=True), prepend=True))
    return _render("accepted", context)


def sidebar_item_for(conversation_id: int, prepend: bool) -> str:
    conversation = (
        Conversation.objects.only("id", "title")
        .annotate(
            generating=Exists(Message.objects.filter(conversation=OuterRef("pk"), status=Message.Status.STREAMING))
        )
        .filter(pk=conversation_id)
        .first()
    )
    if conversation is None:  # deleted meanwhile
        return sidebar_remove(conversation_id)
    return sidebar_placed(sidebar_item(conversation, conversation.generating), prepend)


def sidebar_item(conversation: Conversation, generating: bool) -> str:
    """A conversation's sidebar item, from what is at hand (no query)."""
    generating_ids = {conversation.pk} if generating else set()
    return _sidebar_item(conversation, generating_ids)


def _sidebar_item(conversation: Conversation, generating_ids: set[int]) -> str:
    # The sidebar's own partial: a socket swaps it in by its id.
    context = {"c": conversation, "generating_ids": generating_ids}
    return render_to_string("conversations/parts.html#sidebar_item", context)


def sidebar_placed(item: str, prepend: bool) -> str:
    """The item replacing the one shown, or (a new conversation) at the top of the list.
    The one place that says how an item is prepended (the item rides in events, and
    whether to prepend depends on the socket)."""
    return f'<ul hx-swap-oob="afterbegin:#conversation-list">{item}</ul>' if prepend else item


def sidebar_items_for(user, conversation_ids: list[int]) -> str:
    """The user's own conversations among these ids, as sidebar items (swapped in place)."""
    conversations = list(Conversation.objects.filter(user=user, pk__in=conversation_ids).only("id", "title"))
    generating = set(
        Message.objects.filter(conversation__in=conversations, status=Message.Status.STREAMING).values_list(
            "conversation_id", flat=True
        )
    )
    return "".join(_sidebar_item(c, generating) for c in conversations)


def sidebar_remove(conversation_id: int) -> str:
    return _render("sidebar_remove", {"conversation_id": conversation_id})


def error(text: str) -> str:
    return _render("error", {"error": text})


def no_api_key() -> str:
    return _render("no_api_key", {})
