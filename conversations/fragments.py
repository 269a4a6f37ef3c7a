"""The htmx fragments the chat socket sends, one function per kind.

Each renders a partial of templates/conversations/stream.html (or a partial the page
itself uses), so what a socket swaps in is what a reload would show. The `*_for`
functions read the database: the consumer calls them off the event loop.
"""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils.html import escape

from conversations import budgets
from conversations.models import Conversation, Message


def _render(partial: str, context: dict) -> str:
    return render_to_string(f"conversations/stream.html#{partial}", context)


def delta(event: dict) -> str:
    """Escaped text appended to the streaming answer and thinking: the hot path.

    Plain text deltas (nearly all of them) are formatted here with the exact markup of
    stream.html#delta, which a test checks; rendering that partial per delta per socket
    was a tenth of the relay's CPU in the benchmark. The rare delta that also carries
    the thinking time or clears a notice goes through the partial.
    """
    if "thinking_seconds" in event or "clear_status" in event:
        return _render("delta", event)
    message = event["message"]
    html = ""
    if event["thinking"]:
        html += f'<div hx-swap-oob="beforeend:#msg-{message}-thinking">{escape(event["thinking"])}</div>'
    if event["answer"]:
        html += f'<div hx-swap-oob="beforeend:#msg-{message}-answer">{escape(event["answer"])}</div>'
    return html


def status(message_id: int, text: str) -> str:
    return _render("status", {"message": message_id, "text": text})


def turn_for(question_id: int | None, answer_id: int, model_name: str) -> str:
    """The new question and an empty streaming answer. The answer is drawn as it started,
    not as stored: a fast one may have ended by now, and its own "done" follows."""
    question = Message.objects.get(pk=question_id) if question_id else None
    answer = Message(pk=answer_id, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING, model_name=model_name)
    return _render("turn", {"question": question, "answer": answer})


def done_for(answer_id: int) -> str:
    answer = Message.objects.select_related("cost_log", "conversation__user").get(pk=answer_id)
    return _render(
        "done",
        {
            "m": answer,
            "last_answer_id": answer.pk,
            # Each answer changes the header's total and maybe the budget notice.
            "totals": answer.conversation.cost_totals(),
            "budget": budgets.state(answer.conversation.user),
        },
    )


def catch_up(answer_id: int, answer: str, thinking: str) -> str:
    return _render("catch_up", {"message": answer_id, "answer": answer, "thinking": thinking})


def accepted(conversation: Conversation, *, new: bool) -> str:
    return _render("accepted", {"conversation": conversation, "new": new})


def sidebar_item_for(conversation_id: int, prepend: bool) -> str:
    conversation = Conversation.objects.only("id", "title").get(pk=conversation_id)
    generating = conversation.messages.filter(status=Message.Status.STREAMING).exists()
    return _render(
        "sidebar_item", {"c": conversation, "generating_ids": {conversation.pk} if generating else set(), "prepend": prepend}
    )


def error(text: str) -> str:
    return _render("error", {"error": text})


def no_api_key() -> str:
    return _render("no_api_key", {})
