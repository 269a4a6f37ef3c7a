"""Storing what a generation answers, before the gateway is called.

A new turn (a question and its empty answer), a regeneration (a fresh answer beside an
old one: a new version of it; Retry after a failure is the same) and an edit (a new
version of a question, then a fresh answer to it) each store their rows in one
transaction and return one `NewTurn`, which says everything the relay and the pages
need: the rows, the history to send, and how the page shows it. They run inside
admission's transaction, so theirs adds no savepoint (an error undoes both).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from conversations import gateway
from conversations.models import Conversation, GatewayModel, Message


@dataclass(frozen=True)
class NewTurn:
    conversation: Conversation
    question: Message
    answer: Message  # empty, status streaming
    model: GatewayModel
    history: list[Message]  # the turns before the question, oldest first
    new_conversation: bool = False
    redraw: bool = False  # a new version: the page redraws the messages shown
    previous: int | None = None  # the answer the question follows (a new turn only)

    def request_body(self) -> dict:
        """The gateway request: the question, its history, and the settings the user set
        (enable_thinking for thinking models only)."""
        c = self.conversation
        return gateway.build_body(
            service_name=self.model.service_name,
            model_name=self.model.model_name,
            prompt=self.question.content,
            history=[gateway.history_turn(m.role, m.content) for m in self.history],
            parameters=gateway.build_parameters(
                enable_thinking=c.enable_thinking if self.model.thinking else None,
                system_prompt=c.system_prompt,
                temperature=c.temperature,
                max_output_tokens=c.max_output_tokens,
            ),
        )


def ask(
    user: User, conversation: Conversation | None, model: GatewayModel, text: str, settings: dict | None
) -> NewTurn:
    """The user's question after the last message shown, and an empty answer to it.

    `conversation` is None for a new chat; `settings` (cleaned by forms.SettingsForm) are
    then its settings.
    """
    now = timezone.now()
    new = conversation is None
    with transaction.atomic(savepoint=False):
        if conversation is None:
            conversation = Conversation(
                user=user, title=Conversation.title_from(text), model=model, created_at=now, updated_at=now
            )
            for field, value in (settings or {}).items():
                setattr(conversation, field, value)
            conversation.save()
            parent = None
        else:
            fields = _switch_model(conversation, model, now)
            if not conversation.title:
                conversation.title = Conversation.title_from(text)
                fields.append("title")
            conversation.save(update_fields=fields)
            parent = conversation.leaf()
        question = Message(
            conversation=conversation, parent=parent, role=Message.Role.USER, content=text, created_at=now
        )
        question.save(append=False, only_version=new)
        answer = _new_answer(conversation, question, model, now, only_version=True)
        history = [] if new else conversation.history(before=question)
    return NewTurn(
        conversation, question, answer, model, history, new_conversation=new, previous=parent.pk if parent else None
    )


def regenerate(answer: Message, model: GatewayModel) -> NewTurn:
    """A new version of `answer`: a sibling of it, shown from now on."""
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        conversation = Conversation.objects.get(pk=answer.conversation_id)
        question = answer.question()
        if question is None:  # the consumer refuses these first
            raise ValueError(f"answer {answer.pk} follows no question")
        fresh = _new_answer(conversation, question, model, now)
        conversation.save(update_fields=_switch_model(conversation, model, now))
        history = conversation.history(before=question)
    return NewTurn(conversation, question, fresh, model, history, redraw=True)


def edit(question: Message, text: str, model: GatewayModel) -> NewTurn:
    """A new version of `question` (a sibling of it, shown from now on) and an empty answer to it."""
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        conversation = Conversation.objects.get(pk=question.conversation_id)
        edited = Message(
            conversation=conversation,
            parent_id=question.parent_id,
            role=Message.Role.USER,
            content=text,
            created_at=now,
        )
        edited.save(append=False)
        # Its branch is the one shown now, up to the first question.
        conversation.tree().show(edited)
        answer = _new_answer(conversation, edited, model, now, only_version=True)
        conversation.save(update_fields=_switch_model(conversation, model, now))
        history = conversation.history(before=edited)
    return NewTurn(conversation, edited, answer, model, history, redraw=True)


def _switch_model(conversation: Conversation, model: GatewayModel, now: datetime) -> list[str]:
    """A conversation follows the model of its latest answer (a new chat starts on it)."""
    conversation.model = model
    conversation.updated_at = now
    return ["model", "updated_at"]


def _new_answer(
    conversation: Conversation, question: Message, model: GatewayModel, now: datetime, *, only_version: bool = False
) -> Message:
    """An empty answer to `question` (`only_version`: the question is new, so it has no other)."""
    answer = Message(
        conversation=conversation,
        parent=question,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        service_name=model.service_name,
        model_name=model.model_name,
        created_at=now,
    )
    answer.save(append=False, only_version=only_version)
    return answer
