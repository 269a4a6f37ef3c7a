"""Helpers for the cost tests: ledger rows and answers, written as generations write them."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from django.utils import timezone

from conversations.models import Conversation, CostLog, Message


def conversation(user, title="A chat") -> Conversation:
    return Conversation.objects.create(user=user, title=title)


def log_cost(
    user,
    cost: str,
    *,
    service="google-gemini",
    model="gemini-2.0-flash",
    when=None,
    chat: Conversation | None = None,
    tokens=(10, 20),
    warnings=(),
) -> CostLog:
    """One generation's ledger row (an answer message too when `chat` is given)."""
    when = when or timezone.now()
    message = None
    if chat is not None:
        message = chat.messages.create(
            role=Message.Role.ASSISTANT, content="ok", service_name=service, model_name=model, created_at=when
        )
    return CostLog.objects.create(
        user=user,
        conversation=chat,
        message=message,
        service_name=service,
        model_name=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        total_tokens=tokens[0] + tokens[1],
        cost_total=Decimal(cost),
        warnings=list(warnings),
        created_at=when,
    )


def ended_without_cost(chat: Conversation, status: str, *, model="gemini-2.0-flash", when=None) -> Message:
    return chat.messages.create(
        role=Message.Role.ASSISTANT,
        status=status,
        service_name="google-gemini",
        model_name=model,
        created_at=when or timezone.now(),
    )


def read_csv(response) -> list[dict]:
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))
