"""Versions: regenerate an answer, edit a question, switch between versions ("‹ 2/3 ›"),
and the history the gateway gets following the versions shown."""

from __future__ import annotations

import importlib
import json
import threading

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from conversations.models import Conversation, CostLog, Message, Tree
from tests.chat import (
    db,
    frames_until,
    no_generation_left,
    open_socket,
    reloaded_page,
    send,
    until_done,
)
from tests.fakegateway import Reply, Wait, chunk, error_reply, final, sse, stream_reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("shared_key_allowed", "no_retries")]


def action(name, message, **extra):
    return json.dumps({"action": name, "message": message, **extra})


def texts(history):
    return [turn["content"][0]["content"] for turn in history]


async def two_turns(socket, model):
    """Q1 -> A1, Q2 -> A2 in one conversation; returns the conversation."""
    await socket.send_to(text_data=send("First question", model))
    await until_done(socket)
    conversation = await db(lambda: Conversation.objects.get())
    await socket.send_to(text_data=send("Second question", model, conversation.pk))
    await until_done(socket)
    return conversation


def answers(content):
    return list(Message.objects.filter(role="assistant", content=content))


async def test_it_regenerates_the_last_answer_as_a_new_version(alice, db_models, gateway_url, fake_gateway):
    flash, thinker = db_models["flash"], db_models["thinker"]
    fake_gateway.queue(stream_reply(["A1"]), stream_reply(["A2"]), stream_reply(["A2 again"]), stream_reply(["A3"]))
    socket = await open_socket(alice)
    conversation = await two_turns(socket, flash.pk)
    a2 = await db(lambda: Message.objects.get(content="A2"))

    # Regenerate with the model picked now (the thinking model).
    await socket.send_to(text_data=action("regenerate", a2.pk, model=thinker.pk))
    frames = await until_done(socket)
    assert 'hx-swap-oob="innerHTML"' in frames[0] and 'id="messages"' in frames[0]  # the thread, redrawn
    assert "A2 again" in frames[-1]
    assert 'aria-label="Version 2 of 2"' in frames[-1]
    regenerated = fake_gateway.requests[2].json
    assert regenerated["model_name"] == thinker.model_name
    assert regenerated["input"][0]["content"] == "Second question"
    assert texts(regenerated["history"]) == ["First question", "A1"]
    assert regenerated["parameters"] == {"enable_thinking": True}

    # Both versions are stored, siblings of each other; the new one is shown.
    old, new = await db(lambda: list(Message.objects.filter(parent=a2.parent_id).order_by("id")))
    assert (old.content, old.selected, new.content, new.selected) == ("A2", False, "A2 again", True)
    assert new.model_name == thinker.model_name
    assert await db(lambda: CostLog.objects.count()) == 3  # every version was paid for

    page = await reloaded_page(alice, conversation.pk)
    assert "A2 again" in page and ">A2<" not in page
    assert 'aria-label="Version 2 of 2"' in page

    # The next turn follows the version shown.
    await socket.send_to(text_data=send("Third question", flash.pk, conversation.pk))
    await until_done(socket)
    assert texts(fake_gateway.requests[3].json["history"]) == ["First question", "A1", "Second question", "A2 again"]
    await socket.disconnect()
    await no_generation_left()


async def test_switching_versions_redraws_every_tab_and_the_history_follows(
    alice, db_models, gateway_url, fake_gateway
):
    flash = db_models["flash"].pk
    fake_gateway.queue(stream_reply(["A1"]), stream_reply(["A2"]), stream_reply(["A2 v2"]), stream_reply(["After v1"]))
    socket = await open_socket(alice)
    conversation = await two_turns(socket, flash)
    a2 = await db(lambda: Message.objects.get(content="A2"))
    await socket.send_to(text_data=action("regenerate", a2.pk, model=flash))
    await until_done(socket)
    other_tab = await open_socket(alice, f"/ws/chat/{conversation.pk}/")
    await other_tab.receive_from(timeout=5)  # its resync: the last answer's final state

    # Back to version 1: both tabs redraw the messages, showing "A2" as "1 of 2".
    await socket.send_to(text_data=action("select", a2.pk))
    for tab in (socket, other_tab):
        frame = (await frames_until(tab, 'id="messages"'))[-1]
        assert ">A2</p>" in frame and "A2 v2" not in frame
        assert 'aria-label="Version 1 of 2"' in frame
        assert 'aria-label="Previous version" disabled' in frame
    assert await db(lambda: Message.objects.get(pk=a2.pk).selected) is True
    page = await reloaded_page(alice, conversation.pk)
    assert ">A2</p>" in page and "A2 v2" not in page

    # A new turn now continues from version 1, and its history says so.
    await socket.send_to(text_data=send("Follow-up", flash, conversation.pk))
    await until_done(socket)
    assert texts(fake_gateway.requests[3].json["history"]) == ["First question", "A1", "Second question", "A2"]
    follow_up = await db(lambda: Message.objects.get(content="Follow-up"))
    assert follow_up.parent_id == a2.pk

    # Version 2 kept its own (empty) continuation: switching back shows it without the follow-up.
    v2 = await db(lambda: Message.objects.get(content="A2 v2"))
    await socket.send_to(text_data=action("select", v2.pk))
    frame = (await frames_until(socket, 'id="messages"'))[-1]
    assert "A2 v2" in frame and "Follow-up" not in frame
    for tab in (socket, other_tab):
        await tab.disconnect()
    await no_generation_left()


async def test_editing_a_question_makes_a_new_version_of_it_and_what_follows(
    alice, db_models, gateway_url, fake_gateway
):
    flash = db_models["flash"].pk
    fake_gateway.queue(stream_reply(["A1"]), stream_reply(["A2"]), stream_reply(["A1 for the edit"]))
    socket = await open_socket(alice)
    conversation = await two_turns(socket, flash)
    q1 = await db(lambda: Message.objects.get(content="First question"))

    await socket.send_to(
        text_data=json.dumps({"action": "edit", "message": q1.pk, "text": "  First, edited ", "model": flash})
    )
    frames = await until_done(socket)
    assert "First, edited" in frames[0] and "Second question" not in frames[0]  # the thread from the edit on
    edited_request = fake_gateway.requests[2].json
    assert edited_request["input"][0]["content"] == "First, edited"
    assert "history" not in edited_request  # it was the first question

    edited = await db(lambda: Message.objects.get(content="First, edited"))
    assert edited.parent_id is None and edited.selected
    assert await db(lambda: Message.objects.get(pk=q1.pk).selected) is False
    page = await reloaded_page(alice, conversation.pk)
    assert "First, edited" in page and "A1 for the edit" in page
    assert "Second question" not in page and 'aria-label="Version 2 of 2"' in page

    # The first version, with its whole continuation, is one click away.
    await socket.send_to(text_data=action("select", q1.pk))
    frame = (await frames_until(socket, 'id="messages"'))[-1]
    assert "First question" in frame and "Second question" in frame and "A2" in frame
    await socket.disconnect()
    await no_generation_left()


async def test_editing_a_later_question_keeps_the_history_before_it(alice, db_models, gateway_url, fake_gateway):
    flash = db_models["flash"].pk
    fake_gateway.queue(stream_reply(["A1"]), stream_reply(["A2"]), stream_reply(["A2 for the edit"]))
    socket = await open_socket(alice)
    await two_turns(socket, flash)
    q2 = await db(lambda: Message.objects.get(content="Second question"))
    await socket.send_to(
        text_data=json.dumps({"action": "edit", "message": q2.pk, "text": "Second, edited", "model": flash})
    )
    await until_done(socket)
    request = fake_gateway.requests[2].json
    assert request["input"][0]["content"] == "Second, edited"
    assert texts(request["history"]) == ["First question", "A1"]
    edited = await db(lambda: Message.objects.get(content="Second, edited"))
    assert edited.parent_id == q2.parent_id  # a sibling of the question it replaces
    await socket.disconnect()
    await no_generation_left()


async def test_retry_is_a_regeneration_the_failed_answer_becomes_version_one(
    alice, db_models, gateway_url, fake_gateway
):
    fake_gateway.queue(error_reply(503, "busy"), stream_reply(["Fine now"]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Question", db_models["flash"].pk))
    await until_done(socket)
    failed = await db(lambda: Message.objects.get(role="assistant"))
    await socket.send_to(text_data=action("retry", failed.pk))
    frames = await until_done(socket)
    assert "Fine now" in frames[-1] and 'aria-label="Version 2 of 2"' in frames[-1]
    fresh = await db(lambda: Message.objects.get(content="Fine now"))
    assert fresh.parent_id == failed.parent_id
    await socket.send_to(text_data=action("select", failed.pk))
    frame = (await frames_until(socket, 'id="messages"'))[-1]
    assert "The gateway failed (HTTP 503)" in frame and "Version 1 of 2" in frame
    await socket.disconnect()
    await no_generation_left()


async def test_only_the_last_answer_is_regenerated_and_nothing_while_generating(
    alice, db_models, gateway_url, fake_gateway
):
    flash = db_models["flash"].pk
    release = threading.Event()
    fake_gateway.queue(
        stream_reply(["A1"]), stream_reply(["A2"]), Reply(parts=[sse(chunk("Busy")), Wait(release), final()])
    )
    socket = await open_socket(alice)
    conversation = await two_turns(socket, flash)
    a1 = await db(lambda: Message.objects.get(content="A1"))
    await socket.send_to(text_data=action("regenerate", a1.pk, model=flash))
    assert "Only the last answer can be regenerated" in await socket.receive_from(timeout=5)

    await socket.send_to(text_data=send("Third", flash, conversation.pk))
    await frames_until(socket, "Busy</div>")
    q1 = await db(lambda: Message.objects.get(content="First question"))
    for frame in (
        action("select", a1.pk),
        json.dumps({"action": "edit", "message": q1.pk, "text": "Changed", "model": flash}),
        action("regenerate", a1.pk, model=flash),
    ):
        await socket.send_to(text_data=frame)
        assert "still being generated" in await socket.receive_from(timeout=5)
    release.set()
    await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    assert len(fake_gateway.requests) == 3
    assert await db(lambda: Message.objects.filter(content="Changed").exists()) is False


async def test_an_edit_is_checked_like_a_message(alice, db_models, gateway_url, fake_gateway, settings):
    fake_gateway.queue(stream_reply(["A1"]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Question", db_models["flash"].pk))
    await until_done(socket)
    question = await db(lambda: Message.objects.get(role="user"))
    answer = await db(lambda: Message.objects.get(role="assistant"))
    settings.MAX_MESSAGE_CHARS = 10
    for frame, refusal in [
        (
            {"action": "edit", "message": question.pk, "text": "  ", "model": db_models["flash"].pk},
            "Type a message first",
        ),
        ({"action": "edit", "message": question.pk, "text": "x" * 11, "model": db_models["flash"].pk}, "limit is 10"),
        ({"action": "edit", "message": question.pk, "text": "Fine", "model": 99999}, "model is not available"),
        (
            {"action": "edit", "message": answer.pk, "text": "Fine", "model": db_models["flash"].pk},
            "question was not found",
        ),
        ({"action": "select", "message": "abc"}, "version was not found"),
    ]:
        await socket.send_to(text_data=json.dumps(frame))
        assert refusal in await socket.receive_from(timeout=5)
    settings.MAX_MESSAGES_PER_MINUTE = 1  # limits apply to new versions too
    await socket.send_to(
        text_data=json.dumps({"action": "edit", "message": question.pk, "text": "Fine", "model": db_models["flash"].pk})
    )
    assert "the limit is 1" in await socket.receive_from(timeout=5)
    await socket.send_to(text_data=action("regenerate", answer.pk, model=db_models["flash"].pk))
    assert "the limit is 1" in await socket.receive_from(timeout=5)
    await socket.disconnect()
    assert await db(lambda: Message.objects.count()) == 2
    assert len(fake_gateway.requests) == 1


async def test_bob_cannot_regenerate_edit_or_switch_alices_versions(alice, bob, db_models, gateway_url, fake_gateway):
    @sync_to_async
    def setup():
        conversation = Conversation.objects.create(user=alice, title="Alice's")
        question = conversation.messages.create(role="user", content="Secret question")
        answer = conversation.messages.create(role="assistant", content="Secret answer", status="complete")
        other = Message(conversation=conversation, parent=question, role="assistant", content="Other", selected=False)
        other.save()
        Message.objects.filter(pk=answer.pk).update(selected=True)
        return conversation, question, answer, other

    conversation, question, answer, other = await setup()
    socket = await open_socket(bob)
    for frame, refusal in [
        (action("regenerate", answer.pk, model=db_models["flash"].pk), "answer was not found"),
        (
            json.dumps({"action": "edit", "message": question.pk, "text": "Hi", "model": db_models["flash"].pk}),
            "question was not found",
        ),
        (action("select", other.pk), "version was not found"),
    ]:
        await socket.send_to(text_data=frame)
        reply = await socket.receive_from(timeout=5)
        assert refusal in reply and "Secret" not in reply
    await socket.disconnect()
    assert fake_gateway.requests == []
    assert await db(lambda: Message.objects.get(pk=other.pk).selected) is False

    @sync_to_async
    def statuses():
        client = Client()
        client.force_login(bob)
        return [client.get(f"/c/{conversation.pk}/m/{question.pk}/{end}").status_code for end in ("", "edit/")]

    assert await statuses() == [404, 404]


@pytest.mark.django_db
def test_the_edit_form_and_cancel_are_the_users_own(client, alice, db_models):
    conversation = Conversation.objects.create(user=alice, title="Mine")
    question = conversation.messages.create(role="user", content="Ask <b>this</b>")
    answer = conversation.messages.create(role="assistant", content="Answer", status="complete")
    client.force_login(alice)
    form = client.get(f"/c/{conversation.pk}/m/{question.pk}/edit/").content.decode()
    assert "ws-send" in form and 'name="action" value="edit"' in form and 'hx-include="#model-select"' in form
    assert "Ask &lt;b&gt;this&lt;/b&gt;</textarea>" in form
    assert client.get(f"/c/{conversation.pk}/m/{answer.pk}/edit/").status_code == 404  # answers aren't edited
    article = client.get(f"/c/{conversation.pk}/m/{question.pk}/").content.decode()
    assert article.strip().startswith(f'<article id="msg-{question.pk}" class="message user')
    assert client.get(f"/c/{conversation.pk + 1}/m/{question.pk}/").status_code == 404  # the right conversation only


@pytest.mark.django_db
def test_messages_created_without_a_parent_follow_the_last_one_shown(alice):
    conversation = Conversation.objects.create(user=alice, title="x")
    q = conversation.messages.create(role="user", content="Q")
    a = conversation.messages.create(role="assistant", content="A", status="complete")
    q2 = conversation.messages.create(role="user", content="Q2")
    assert (q.parent_id, a.parent_id, q2.parent_id) == (None, q.pk, a.pk)
    assert [m.content for m in conversation.thread()] == ["Q", "A", "Q2"]
    assert [m.content for m in conversation.history(before=q2)] == ["Q", "A"]


@pytest.mark.django_db
def test_the_tree_shows_the_selected_version_at_each_branch(alice):
    conversation = Conversation.objects.create(user=alice, title="x")
    q = conversation.messages.create(role="user", content="Q")
    a1 = conversation.messages.create(role="assistant", content="A1", status="complete")
    a2 = Message(conversation=conversation, parent=q, role="assistant", content="A2", status="complete")
    a2.save()
    assert [m.content for m in conversation.thread()] == ["Q", "A2"]
    thread = conversation.thread()
    assert (thread[1].version_index, thread[1].version_count, thread[1].prev_version_id) == (2, 2, a1.pk)
    Tree(conversation.messages.all()).show(Message.objects.get(pk=a1.pk))
    assert [m.content for m in conversation.thread()] == ["Q", "A1"]
    assert conversation.last_answer().pk == a1.pk


@pytest.mark.django_db(transaction=True)
def test_the_migration_turns_old_conversations_into_trees(alice):
    """0006: each question follows the last answer before it; of retried answers, the last is shown."""
    migration = importlib.import_module("conversations.migrations.0006_message_tree")
    from django.apps import apps

    conversation = Conversation.objects.create(user=alice, title="Old")
    rows = [
        ("user", "Q1"),
        ("assistant", "A1 broken"),
        ("assistant", "A1 retried"),
        ("user", "Q2"),
        ("assistant", "A2"),
    ]
    made = []
    for role, content in rows:
        m = Message(conversation=conversation, role=role, content=content, status="complete")
        m.save(append=False)  # as before the migration: no parents, all selected
        made.append(m)
    Message.objects.update(parent=None, selected=True)

    migration.link(apps, None)

    got = {m.content: m for m in Message.objects.all()}
    assert got["A1 broken"].parent_id == got["Q1"].pk and not got["A1 broken"].selected
    assert got["A1 retried"].parent_id == got["Q1"].pk and got["A1 retried"].selected
    assert got["Q2"].parent_id == got["A1 retried"].pk
    assert [m.content for m in conversation.thread()] == ["Q1", "A1 retried", "Q2", "A2"]


async def test_new_versions_need_a_key_and_a_budget_like_any_answer(alice, db_models, gateway_url, fake_gateway):
    from decimal import Decimal

    from conversations.models import Budget, SiteSettings

    fake_gateway.queue(stream_reply(["A1"]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Question", db_models["flash"].pk))
    await until_done(socket)
    question = await db(lambda: Message.objects.get(role="user"))
    answer = await db(lambda: Message.objects.get(role="assistant"))
    edit = json.dumps({"action": "edit", "message": question.pk, "text": "Changed", "model": db_models["flash"].pk})
    regenerate = action("regenerate", answer.pk, model=db_models["flash"].pk)

    await db(lambda: Budget.objects.create(user=alice, monthly_limit=Decimal("0.0001")))  # already spent: $0.0001554
    for frame in (edit, regenerate):
        await socket.send_to(text_data=frame)
        assert "new answers are paused" in await socket.receive_from(timeout=5)

    await db(lambda: SiteSettings.objects.update(allow_shared_key=False))  # and no key of her own
    for frame in (edit, regenerate):
        await socket.send_to(text_data=frame)
        assert "Add your gateway API key" in await socket.receive_from(timeout=5)
    await socket.disconnect()
    assert await db(lambda: Message.objects.count()) == 2
    assert len(fake_gateway.requests) == 1
