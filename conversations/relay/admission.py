"""Whether a user may start a generation now: every check, and the turn stored, in one call.

The consumer runs `admit()` once, in one hop to a thread: nothing else generating in
the conversation, the user's limits (answers at once, messages a minute), a key to
send, and the month's budget with what the running answers may still cost. The checks
and the storing of the turn (its answer row is what the next check counts) happen in
one transaction that holds a lock on the user's row, so parallel sockets, in one
process or several, are admitted one at a time and cannot slip past a limit together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from conversations.costs import budgets
from conversations.costs.money import format_money
from conversations.models import ApiKey, Conversation, CostLog, GatewayModel, Message, SiteSettings
from conversations.relay import generation
from conversations.relay.turns import NewTurn

BUSY = "An answer is still being generated here. Stop it or wait for it."


@dataclass(frozen=True)
class Admission:
    refusal: str = ""  # why not, in words for the user
    needs_key: bool = False  # refused for want of a key: the page says where to add one
    api_key_id: int | None = None  # the user's key to send; None: the site's shared key
    turn: NewTurn | None = None  # what was stored, when admitted

    @property
    def admitted(self) -> bool:
        return self.turn is not None


def admit(
    user: User, conversation: Conversation | None, model: GatewayModel, store: Callable[[], NewTurn]
) -> Admission:
    """Whether `user` may start a generation with `model` (in `conversation`, or a new
    chat) now; if so, `store()` stores the turn before anyone else is admitted."""
    with transaction.atomic():
        if connection.features.has_select_for_update:
            # Every admission of this user, in every process, waits here for the one before.
            User.objects.select_for_update().filter(pk=user.pk).first()
        if conversation is not None and busy(conversation):
            return Admission(refusal=BUSY)
        if refusal := limits_refusal(user):
            return Admission(refusal=refusal)
        key = ApiKey.for_user(user)
        if key is None and not SiteSettings.load().fallback_allowed:
            return Admission(needs_key=True)
        if refusal := budget_refusal(user, model):
            return Admission(refusal=refusal)
        return Admission(api_key_id=key.pk if key else None, turn=store())


def busy(conversation: Conversation) -> bool:
    """An answer is being generated in the conversation (one left by a dead process is not)."""
    generation.sweep_orphans(conversation.user_id)
    return conversation.generating_message() is not None


def limits_refusal(user: User) -> str | None:
    """Why the user may not start another generation now, or None if they may."""
    counts = Message.objects.filter(conversation__user=user).aggregate(
        streaming=Count("id", filter=Q(status=Message.Status.STREAMING)),
        recent=Count(
            "id", filter=Q(role=Message.Role.ASSISTANT, created_at__gte=timezone.now() - timedelta(minutes=1))
        ),
    )
    if (streaming := counts["streaming"]) >= settings.MAX_CONCURRENT_GENERATIONS:
        return (
            f"You already have {streaming} answers being generated; the limit is "
            f"{settings.MAX_CONCURRENT_GENERATIONS}. Wait for one to finish or stop it."
        )
    if (recent := counts["recent"]) >= settings.MAX_MESSAGES_PER_MINUTE:
        return (
            f"You have sent {recent} messages in the last minute; the limit is "
            f"{settings.MAX_MESSAGES_PER_MINUTE}. Wait a moment and send again."
        )
    return None


def budget_refusal(user: User, model: GatewayModel) -> str | None:
    """Why the month's budget allows no new answer, or None.

    An answer's cost is known only at its end, so each answer still running, and this
    new one, reserve what the dearest answer of their model cost over the last 30 days
    (nothing for a model with no cost yet: the spend can then end above the budget by
    what the running answers cost, at most MAX_CONCURRENT_GENERATIONS of them). An
    answer already running is never stopped: it finishes and is billed.
    """
    budget = budgets.state(user)
    if budget.limit is None:
        return None
    if budget.exceeded:
        return budget.message
    running = Message.objects.filter(conversation__user=user, status=Message.Status.STREAMING)
    models = [*running.values_list("service_name", "model_name"), (model.service_name, model.model_name)]
    reserved = sum((reservation(*m) for m in models), Decimal(0))
    if budget.spent + reserved <= budget.limit:
        return None
    left = budget.limit - budget.spent
    return (
        f"You have {format_money(left)} left of your {format_money(budget.limit)} monthly budget, and "
        f"{'this answer' if len(models) == 1 else 'the answers already running and this one'} may cost up to "
        f"{format_money(reserved)}. Wait for the running answers to finish, or pick a cheaper model."
    )


def reservation(service_name: str, model_name: str) -> Decimal:
    """What one answer of this model may cost: the dearest of the last 30 days."""
    dearest = CostLog.objects.filter(
        service_name=service_name, model_name=model_name, created_at__gte=timezone.now() - timedelta(days=30)
    ).aggregate(dearest=Max("cost_total"))["dearest"]
    return dearest or Decimal(0)
