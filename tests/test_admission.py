"""Per-user limits and budgets hold when one user sends from many sockets at once."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import pytest

from conversations.models import Budget, CostLog, Message
from tests.chat import db, frames_until, no_generation_left, open_socket, send
from tests.fakegateway import Reply, Wait, chunk, final, sse

pytestmark = pytest.mark.django_db(transaction=True)

SOCKETS = 10


# A socket's answer to its "send": a refusal (in #chat-error), or the composer reset for
# the new conversation. Sidebar updates from the other sockets' chats may come first.
ANSWERED = 'id="chat-error"|id="conversation-field"'


async def send_from_many_sockets(user, model_id: int, release: threading.Event) -> list[str]:
    """Every socket sends at once; returns the frame that answered each."""
    sockets = [await open_socket(user) for _ in range(SOCKETS)]
    await asyncio.gather(*(s.send_to(text_data=send(f"Question {i}", model_id)) for i, s in enumerate(sockets)))
    replies = [frames[-1] for frames in await asyncio.gather(*(frames_until(s, ANSWERED) for s in sockets))]
    release.set()
    for s in sockets:
        await s.disconnect()
    await no_generation_left()
    return replies


async def test_it_admits_no_more_than_the_concurrency_limit_from_parallel_sockets(
    alice, db_models, gateway_url, fake_gateway, shared_key_allowed, settings
):
    settings.MAX_CONCURRENT_GENERATIONS = 2
    release = threading.Event()
    fake_gateway.queue(*(Reply(parts=[sse(chunk("Busy")), Wait(release), final()]) for _ in range(SOCKETS)))

    replies = await send_from_many_sockets(alice, db_models["flash"].pk, release)

    refused = [r for r in replies if "the limit is 2" in r]
    assert len(refused) == SOCKETS - 2, replies
    # Nothing was stored for the refused ones, and the gateway saw two requests.
    assert await db(lambda: Message.objects.filter(role="assistant").count()) == 2
    assert await db(lambda: Message.objects.filter(role="user").count()) == 2
    assert len(fake_gateway.requests) == 2


async def test_it_reserves_the_budget_of_running_answers(
    alice, db_models, gateway_url, fake_gateway, shared_key_allowed, settings
):
    settings.MAX_CONCURRENT_GENERATIONS = SOCKETS
    flash = db_models["flash"]
    # An earlier answer of this model cost $0.01 (another user's: the price is the model's).
    await db(
        lambda: CostLog.objects.create(
            service_name=flash.service_name, model_name=flash.model_name, cost_total=Decimal("0.01")
        )
    )
    # $0.035 of budget: three answers at the dearest price fit, a fourth does not.
    await db(lambda: Budget.objects.create(user=alice, monthly_limit=Decimal("0.035")))
    release = threading.Event()
    fake_gateway.queue(*(Reply(parts=[sse(chunk("Busy")), Wait(release), final()]) for _ in range(SOCKETS)))

    replies = await send_from_many_sockets(alice, flash.pk, release)

    refused = [r for r in replies if "may cost up to" in r]
    assert len(refused) == SOCKETS - 3, replies
    assert "$0.035 left of your $0.035 monthly budget" in refused[0]
    assert await db(lambda: Message.objects.filter(role="assistant").count()) == 3
