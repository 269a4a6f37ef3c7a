"""Per-user limits on generations: how many at once, and how many messages a minute."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from conversations.models import Message


def refusal(user) -> str | None:
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
