"""Whether a user may start a generation now: every check, in one call.

The consumer runs `admit()` once, in one hop to a thread, before anything is stored:
nothing else generating in the conversation, the user's limits (answers at once,
messages a minute), a key to send, and the month's budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from conversations.costs import budgets
from conversations.models import ApiKey, Conversation, Message, SiteSettings
from conversations.relay import generation

BUSY = "An answer is still being generated here. Stop it or wait for it."


@dataclass(frozen=True)
class Admission:
    refusal: str = ""  # why not, in words for the user
    needs_key: bool = False  # refused for want of a key: the page says where to add one
    api_key_id: int | None = None  # the user's key to send; None: the site's shared key

    @property
    def admitted(self) -> bool:
        return not (self.refusal or self.needs_key)


def admit(user: User, conversation: Conversation | None) -> Admission:
    """Whether `user` may start a generation (in `conversation`, or a new chat) now."""
    if conversation is not None and busy(conversation):
        return Admission(refusal=BUSY)
    if refusal := limits_refusal(user):
        return Admission(refusal=refusal)
    key = ApiKey.for_user(user)
    if key is None and not SiteSettings.load().fallback_allowed:
        return Admission(needs_key=True)
    # One already running is not stopped at the budget: it finishes and is billed.
    if (budget := budgets.state(user)).exceeded:
        return Admission(refusal=budget.message)
    return Admission(api_key_id=key.pk if key else None)


def busy(conversation: Conversation) -> bool:
    """An answer is being generated in the conversation (one left by a dead process is not)."""
    generation.sweep_orphans(conversation.user_id)
    return conversation.generating_message() is not None


def limits_refusal(user: User) -> str | None:
    """Why the user may not start another generation now, or None if they may."""
    streaming = Message.objects.filter(conversation__user=user, status=Message.Status.STREAMING).count()
    if streaming >= settings.MAX_CONCURRENT_GENERATIONS:
        return (
            f"You already have {streaming} answers being generated; the limit is "
            f"{settings.MAX_CONCURRENT_GENERATIONS}. Wait for one to finish or stop it."
        )
    recent = Message.objects.filter(
        conversation__user=user, role=Message.Role.ASSISTANT, created_at__gte=timezone.now() - timedelta(minutes=1)
    ).count()
    if recent >= settings.MAX_MESSAGES_PER_MINUTE:
        return (
            f"You have sent {recent} messages in the last minute; the limit is "
            f"{settings.MAX_MESSAGES_PER_MINUTE}. Wait a moment and send again."
        )
    return None
