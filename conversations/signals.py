"""When a user's access ends, her open sockets close (ChatConsumer.access_revoked).

A socket is signed in once, at its handshake; without this it would go on reading
answers and sending messages after a logout (that session's sockets close) or after
the account is deactivated or deleted (every socket of hers closes). Whatever ends
access without a signal (a bulk update, sessions cleared in the database) is caught by
the socket itself at its next action (ChatConsumer.still_signed_in).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest

from conversations.relay import events


@receiver(user_logged_out)
def close_the_sessions_sockets(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    # The session is flushed right after this signal: its key is still the one the sockets hold.
    if user is not None and request.session.session_key:
        _close_sockets(user.pk, request.session.session_key)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def close_a_deactivated_users_sockets(sender: Any, instance: Any, **kwargs: Any) -> None:
    if not instance.is_active:
        user_id = instance.pk
        transaction.on_commit(lambda: _close_sockets(user_id))  # not if the change rolls back


@receiver(post_delete, sender=settings.AUTH_USER_MODEL)
def close_a_deleted_users_sockets(sender: Any, instance: Any, **kwargs: Any) -> None:
    user_id = instance.pk  # None once the deletion is done
    transaction.on_commit(lambda: _close_sockets(user_id))


def _close_sockets(user_id: int, session_key: str | None = None) -> None:
    async_to_sync(events.layer().group_send)(events.user_group(user_id), events.access_revoked(session_key))
