"""Monthly budgets: the state and its message, the warning on the page, refusal on the socket."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from decimal import Decimal

import pytest

from conversations.costs import budgets, ledger
from conversations.models import Budget, Conversation, CostLog, Message, SiteSettings
from tests.chat import (
    db,
    frames_until,
    no_generation_left,
    open_socket,
    send,
    until_done,
)
from tests.costs import log_cost
from tests.fakegateway import Cut, Reply, Wait, chunk, final, sse, stream_reply

RESUMES = ledger.day_label(ledger.next_month_start())  # e.g. "1 December"
WILL_PAUSE = f"new answers pause when you reach it, until {RESUMES}."
PAUSED = f"new answers are paused until {RESUMES}."


def set_default(amount: str | None) -> None:
    SiteSettings.objects.filter(pk=SiteSettings.load().pk).update(default_monthly_budget=amount and Decimal(amount))


# --- the state ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_there_is_no_budget_by_default(alice):
    log_cost(alice, "1000")
    state = budgets.state(alice)
    assert (state.limit, state.spent, state.state, state.message) == (None, Decimal(1000), "ok", "")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "spent, state, message",
    [
        ("3.99", "ok", "You have spent $3.99 of your $5 monthly budget."),
        ("4", "warning", "You have spent $4 of your $5 monthly budget (80%); " + WILL_PAUSE),
        ("4.02", "warning", "You have spent $4.02 of your $5 monthly budget (80%); " + WILL_PAUSE),
        ("5", "exceeded", "You have spent $5 of your $5 monthly budget; " + PAUSED),
        ("5.0000001", "exceeded", "You have spent $5.0000001 of your $5 monthly budget; " + PAUSED),
    ],
)
def test_it_warns_at_80_percent_and_stops_at_the_budget(alice, spent, state, message):
    set_default("5")
    log_cost(alice, spent)
    budget = budgets.state(alice)
    assert (budget.limit, budget.spent, budget.state, budget.message) == (Decimal(5), Decimal(spent), state, message)


@pytest.mark.django_db
def test_it_counts_only_this_months_spend_of_the_user(alice, bob):
    set_default("1")
    log_cost(alice, "0.5")
    log_cost(alice, "0.00000015")
    month_start = ledger.month_start()
    log_cost(alice, "100", when=month_start - timedelta(microseconds=1))  # last month
    log_cost(bob, "100")
    assert budgets.state(alice).spent == Decimal("0.50000015")  # exact: a database Sum of picounits


@pytest.mark.django_db
def test_a_users_own_budget_overrides_the_default(alice, bob):
    set_default("1")
    Budget.objects.create(user=alice, monthly_limit=Decimal("10"))
    Budget.objects.create(user=bob, monthly_limit=None)  # exempt
    log_cost(alice, "2")
    log_cost(bob, "2")
    assert budgets.state(alice).state == "ok" and budgets.state(alice).limit == Decimal(10)
    assert budgets.state(bob).state == "ok" and budgets.state(bob).limit is None


@pytest.mark.django_db
def test_a_zero_budget_pauses_everything(alice):
    Budget.objects.create(user=alice, monthly_limit=Decimal(0))
    assert budgets.state(alice).exceeded


# --- on the pages -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_chat_page_warns_at_80_percent(client, alice, db_models):
    client.force_login(alice)
    set_default("5")
    log_cost(alice, "3")
    assert '<div id="budget-notice"></div>' in client.get("/").content.decode()
    log_cost(alice, "1.02")
    page = client.get("/").content.decode()
    assert (
        '<div id="budget-notice"><p class="warning" role="status">You have spent $4.02 of your $5 monthly budget (80%)'
        in page
    )
    log_cost(alice, "1")
    page = client.get("/").content.decode()
    assert f"new answers are paused until {RESUMES}.</p></div>" in page
    assert "$5.02 of your $5 monthly budget" in client.get("/usage/").content.decode()


@pytest.mark.django_db
def test_the_admin_sets_budgets(admin_client, alice):
    page = admin_client.get("/admin/conversations/sitesettings/add/").content.decode()
    assert 'name="default_monthly_budget"' in page
    admin_client.post("/admin/conversations/sitesettings/add/", {"default_monthly_budget": "2.5"})
    assert SiteSettings.load().default_monthly_budget == Decimal("2.5")

    response = admin_client.post("/admin/conversations/budget/add/", {"user": alice.pk, "monthly_limit": "0.000125"})
    assert response.status_code == 302
    assert Budget.objects.get(user=alice).monthly_limit == Decimal("0.000125")
    log_cost(alice, "0.0001")
    page = admin_client.get("/admin/conversations/budget/").content.decode()
    assert "$0.000125" in page and "$0.0001" in page
    response = admin_client.post("/admin/conversations/budget/add/", {"user": alice.pk, "monthly_limit": "-1"})
    assert response.status_code == 200  # refused: the form comes back with the error


# --- on the socket -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_key_allowed")
async def test_it_refuses_new_generations_at_the_budget(alice, db_models, gateway_url, fake_gateway):
    await db(lambda: Budget.objects.create(user=alice, monthly_limit=Decimal("0.0003")))
    await db(lambda: log_cost(alice, "0.0003"))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", db_models["flash"].pk))
    reply = await socket.receive_from(timeout=5)
    await socket.disconnect()
    assert '<div id="chat-error" role="alert" hx-swap-oob="true">' in reply
    assert f"You have spent $0.0003 of your $0.0003 monthly budget; new answers are paused until {RESUMES}." in reply
    assert fake_gateway.requests == []
    assert await db(lambda: (Conversation.objects.count(), Message.objects.count())) == (0, 0)  # nothing stored


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_key_allowed")
async def test_it_updates_the_total_and_the_warning_after_each_answer(alice, db_models, gateway_url, fake_gateway):
    await db(lambda: Budget.objects.create(user=alice, monthly_limit=Decimal("0.00019")))
    fake_gateway.queue(stream_reply(["ok"]))  # costs 0.0001554: 81% of the budget
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", db_models["flash"].pk))
    frames = await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    done = frames[-1]
    assert (
        '<p id="conversation-total" class="usage">Conversation total: 536 tokens · '
        '<span class="money" title="$0.0001554">$0.000155</span></p>' in done
    )
    assert (
        '<div id="budget-notice"><p class="warning" role="status">You have spent $0.0001554 of your $0.00019 '
        "monthly budget (81%)" in done
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_key_allowed")
async def test_a_running_generation_finishes_and_is_billed_past_the_budget(alice, db_models, gateway_url, fake_gateway):
    await db(lambda: Budget.objects.create(user=alice, monthly_limit=Decimal("0.001")))
    release = threading.Event()
    fake_gateway.queue(Reply(parts=[sse(chunk("Still ")), Wait(release), sse(chunk("going.")), final()]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", db_models["flash"].pk))
    await frames_until(socket, "Still </div>")

    # Meanwhile another answer (another tab, say) spends the whole budget.
    await db(lambda: log_cost(alice, "0.001"))
    release.set()
    frames = await until_done(socket)
    await no_generation_left()

    answer = await db(lambda: Message.objects.get(role="assistant"))
    assert (answer.status, answer.content) == ("complete", "Still going.")
    log = await db(lambda: CostLog.objects.get(message=answer))
    assert log.cost_total == Decimal("0.0001554")  # billed, although over the budget
    assert f"new answers are paused until {RESUMES}" in frames[-1]  # the notice says so at once

    # The next one is refused, with the spend that includes the finished answer.
    conversation = answer.conversation_id
    await socket.send_to(text_data=send("Another", db_models["flash"].pk, conversation))
    reply = await socket.receive_from(timeout=5)
    await socket.disconnect()
    assert "You have spent $0.0011554 of your $0.001 monthly budget; new answers are paused" in reply
    assert len(fake_gateway.requests) == 1
    assert await db(lambda: Message.objects.count()) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_key_allowed")
async def test_a_retry_is_a_new_generation_and_is_refused_too(alice, db_models, gateway_url, fake_gateway):
    await db(lambda: Budget.objects.create(user=alice, monthly_limit=Decimal("0.01")))
    fake_gateway.queue(Reply(parts=[sse(chunk("Half an answer")), Cut()]))  # interrupted: retryable
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", db_models["flash"].pk))
    await until_done(socket, timeout=20)
    await no_generation_left()
    answer = await db(lambda: Message.objects.get(role="assistant"))
    await db(lambda: log_cost(alice, "0.01"))
    requests = len(fake_gateway.requests)
    await socket.send_to(text_data=json.dumps({"action": "retry", "message": answer.pk}))
    reply = await socket.receive_from(timeout=5)
    await socket.disconnect()
    assert "new answers are paused" in reply
    assert len(fake_gateway.requests) == requests
    assert await db(lambda: Message.objects.filter(role="assistant").count()) == 1
