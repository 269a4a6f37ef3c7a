"""Every gateway fault: a clear message, every character kept, the right status, a usable
socket, and a retry where one makes sense (tests/fakegateway.py serves each on a real socket)."""

from __future__ import annotations

import asyncio
import html
import json
import re
import threading

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from conversations.models import Conversation, CostLog, Message
from conversations.relay import events, fragments, generation
from tests.chat import (
    db,
    frames_until,
    no_generation_left,
    open_socket,
    reloaded_page,
    send,
    until_done,
)
from tests.fakegateway import (
    Cut,
    Pause,
    Reply,
    Wait,
    chunk,
    error_reply,
    final,
    sse,
    stream_reply,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("shared_key_allowed")]

RETRY_BUTTON = ">Retry</button>"


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.UPSTREAM_RETRIES = 2
    settings.UPSTREAM_RETRY_BACKOFF = 0.01


async def chat_once(user, model, text="Hi"):
    """Send one message; return (frames, the stored answer, the page as a reload shows it)."""
    socket = await open_socket(user)
    await socket.send_to(text_data=send(text, model))
    frames = await until_done(socket, timeout=20)
    answer = await db(lambda: Message.objects.filter(role="assistant").last())
    page = await reloaded_page(user, answer.conversation_id)
    # The socket is still usable afterwards.
    await socket.send_to(text_data=send("   ", model))
    assert "Type a message first" in await socket.receive_from(timeout=5)
    await socket.disconnect()
    await no_generation_left()
    return frames, answer, page


FAULTS = [
    # (id, replies, status, text kept, message shown, retry offered, requests made)
    ("1-connection-refused", None, "failed", "", "Could not connect to the gateway", True, 0),
    ("2-first-byte-timeout", [Reply(delay=3, parts=[])] * 3, "failed", "", "did not answer in time", True, 3),
    (
        "3-http-401",
        [error_reply(401, {"detail": "Invalid API key"})],
        "failed",
        "",
        "refused the API key: Invalid API key",
        False,
        1,
    ),
    (
        "4-http-403",
        [error_reply(403, {"detail": "Key disabled"})],
        "failed",
        "",
        "refused the API key: Key disabled",
        False,
        1,
    ),
    (
        "5-http-404",
        [error_reply(404, {"detail": "Unknown model gemini-x"})],
        "failed",
        "",
        "does not know this service or model: Unknown model gemini-x",
        False,
        1,
    ),
    (
        "6-http-422",
        [error_reply(422, {"detail": [{"loc": ["body", "input"], "msg": "field required"}]})],
        "failed",
        "",
        "body.input: field required",
        False,
        1,
    ),
    (
        "7-http-429",
        [error_reply(429, {"detail": "Slow down"}, {"Retry-After": "30"})],
        "failed",
        "",
        "retry after 30 s: Slow down",
        True,
        1,
    ),
    (
        "8-http-500",
        [error_reply(500, "Internal Server Error")] * 3,
        "failed",
        "",
        "The gateway failed (HTTP 500)",
        True,
        3,
    ),
    (
        "8-http-502",
        [error_reply(502, {"error": {"message": "bad gateway"}})] * 3,
        "failed",
        "",
        "(HTTP 502): bad gateway",
        True,
        3,
    ),
    ("8-http-503", [error_reply(503, {"message": "overloaded"})] * 3, "failed", "", "(HTTP 503): overloaded", True, 3),
    (
        "9-error-event",
        [Reply(parts=[sse(chunk("Half ")), sse(chunk("done")), sse({"error": "provider crashed"}, event="error")])],
        "interrupted",
        "Half done",
        "provider crashed",
        True,
        1,
    ),
    (
        "10-cut-mid-stream",
        [Reply(parts=[sse(chunk("Cut ")), sse(chunk("here")), Cut()])],
        "interrupted",
        "Cut here",
        "connection to the gateway broke",
        True,
        1,
    ),
    (
        "11-no-final-chunk",
        [Reply(parts=[sse(chunk("No end"))])],
        "interrupted",
        "No end",
        "ended before it was complete",
        True,
        1,
    ),
    (
        "13-stall",
        [Reply(parts=[sse(chunk("Stalled ")), Pause(3), final()])],
        "interrupted",
        "Stalled ",
        "did not answer in time",
        True,
        1,
    ),
]


@pytest.mark.parametrize("fault, replies, status, kept, message, retry, requests", FAULTS, ids=[f[0] for f in FAULTS])
async def test_each_fault_is_explained_and_nothing_is_lost(
    alice, db_models, fake_gateway, settings, fault, replies, status, kept, message, retry, requests
):
    settings.UPSTREAM_READ_TIMEOUT = 0.5
    settings.UPSTREAM_BASE_URL = "http://127.0.0.1:9/api/v1" if replies is None else fake_gateway.base_url
    fake_gateway.queue(*(replies or []))

    frames, answer, page = await chat_once(alice, db_models["flash"].pk)

    assert answer.status == status
    assert answer.content == kept  # every character that arrived, nothing more
    assert message in answer.error
    assert html.escape(message, quote=False) in frames[-1]  # said in the chat at once...
    assert html.escape(message, quote=False) in page  # ...and after a reload
    if kept:
        assert kept.strip() in page
    assert (RETRY_BUTTON in frames[-1]) is retry
    assert len(fake_gateway.requests) == requests
    assert await db(lambda: CostLog.objects.count()) == 0
    if requests == 3:  # retried automatically, and said so while waiting
        assert sum("Trying again" in f for f in frames) == 2


async def test_a_retry_that_succeeds_shows_the_answer_once(alice, db_models, gateway_url, fake_gateway):
    fake_gateway.queue(error_reply(503, "busy"), error_reply(503, "busy"), stream_reply(["Third ", "time lucky"]))
    frames, answer, _ = await chat_once(alice, db_models["flash"].pk)
    assert (answer.status, answer.content) == ("complete", "Third time lucky")
    assert len(fake_gateway.requests) == 3
    assert "".join(frames).count("Third ") == 1 + 1  # streamed once, rendered once


async def test_it_never_retries_once_text_has_arrived(alice, db_models, gateway_url, fake_gateway):
    fake_gateway.queue(Reply(parts=[sse(chunk("Partial")), Cut()]), stream_reply(["Should not be used"]))
    _, answer, _ = await chat_once(alice, db_models["flash"].pk)
    assert (answer.status, answer.content) == ("interrupted", "Partial")
    assert len(fake_gateway.requests) == 1


async def test_a_malformed_line_is_skipped_counted_and_the_stream_goes_on(alice, db_models, gateway_url, fake_gateway):
    fake_gateway.queue(Reply(parts=[sse(chunk("Before ")), b"data: {not json\n\n", sse(chunk("after")), final()]))
    frames, answer, page = await chat_once(alice, db_models["flash"].pk)
    assert (answer.status, answer.content, answer.skipped_lines) == ("complete", "Before after", 1)
    assert "1 malformed line from the gateway skipped" in frames[-1] and "1 malformed line" in page
    assert await db(lambda: CostLog.objects.count()) == 1


async def test_a_one_megabyte_answer_arrives_whole(alice, db_models, gateway_url, fake_gateway):
    line = "All work and no play makes a long answer. " * 24 + "\n\n"  # ~1 KB
    pieces = [line] * 1024
    fake_gateway.queue(stream_reply(pieces))
    frames, answer, _ = await chat_once(alice, db_models["flash"].pk)
    assert answer.status == "complete"
    assert answer.content == "".join(pieces) and len(answer.content) > 1_000_000
    deltas = [f for f in frames if '-answer-tail">' in f and "beforeend" in f]
    assert len(deltas) < 300  # coalesced: far fewer frames than 1,024 chunks
    # Too large for one socket message at the end: the page loads the whole answer over HTTP.
    assert "Load the full answer" in frames[-1]
    client = Client()
    await db(lambda: client.force_login(alice))
    page = await db(lambda: client.get(f"/c/{answer.conversation_id}/m/{answer.pk}/"))
    assert page.content.decode().count("All work and no play") == 24 * 1024


async def test_retry_gives_a_fresh_answer_and_keeps_the_old_one(alice, db_models, gateway_url, fake_gateway):
    model = db_models["flash"].pk
    fake_gateway.queue(
        Reply(parts=[sse(chunk("Broken ")), Cut()]), stream_reply(["Whole answer"]), stream_reply(["Next"])
    )
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Question", model))
    frames = await until_done(socket)
    failed = await db(lambda: Message.objects.get(role="assistant"))
    assert failed.status == "interrupted" and RETRY_BUTTON in frames[-1]

    await socket.send_to(text_data=json.dumps({"action": "retry", "message": failed.pk}))
    frames = await until_done(socket)
    assert "Whole answer" in frames[-1]
    answers = await db(lambda: list(Message.objects.filter(role="assistant").values_list("content", "status")))
    assert answers == [("Broken ", "interrupted"), ("Whole answer", "complete")]
    retried = fake_gateway.requests[1].json
    assert retried["input"][0]["content"] == "Question" and "history" not in retried

    # The next turn's history carries the retried answer, not the broken one.
    conversation = await db(lambda: Conversation.objects.get())
    await socket.send_to(text_data=send("Follow-up", model, conversation.pk))
    await until_done(socket)
    history = fake_gateway.requests[2].json["history"]
    assert [turn["content"][0]["content"] for turn in history] == ["Question", "Whole answer"]

    # Only the last answer, and only a failed one, can be retried.
    await socket.send_to(text_data=json.dumps({"action": "retry", "message": failed.pk}))
    assert "Only the last answer can be retried" in await socket.receive_from(timeout=5)
    await socket.disconnect()
    await no_generation_left()
    assert len(fake_gateway.requests) == 3


async def test_a_refused_answer_offers_no_retry(alice, db_models, gateway_url, fake_gateway):
    fake_gateway.queue(error_reply(422, {"detail": "nope"}))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Question", db_models["flash"].pk))
    await until_done(socket)
    failed = await db(lambda: Message.objects.get(role="assistant"))
    await socket.send_to(text_data=json.dumps({"action": "retry", "message": failed.pk}))
    assert "Only the last answer can be retried" in await socket.receive_from(timeout=5)
    await socket.disconnect()
    assert len(fake_gateway.requests) == 1


# --- stop, reload, tabs, restart ---------------------------------------------------------


async def test_stop_works_from_another_tab(alice, db_models, gateway_url, fake_gateway):
    never = threading.Event()
    fake_gateway.queue(Reply(parts=[sse(chunk("Going")), Wait(never, timeout=20), final()]))
    first = await open_socket(alice)
    await first.send_to(text_data=send("Hi", db_models["flash"].pk))
    await frames_until(first, "Going</div>")
    conversation = await db(lambda: Conversation.objects.get())
    second = await open_socket(alice, f"/ws/chat/{conversation.pk}/")
    await second.receive_from(timeout=5)  # its catch-up
    await second.send_to(text_data=json.dumps({"action": "stop", "conversation": conversation.pk}))
    for socket in (first, second):
        frames = await until_done(socket)
        assert "Stopped." in frames[-1]
        await socket.disconnect()
    await no_generation_left()
    assert fake_gateway.closed.wait(5)
    answer = await db(lambda: Message.objects.get(role="assistant"))
    assert (answer.status, answer.content) == ("stopped", "Going")


async def test_a_reload_mid_answer_loses_and_repeats_nothing(alice, db_models, gateway_url, fake_gateway):
    first_half, second_half = threading.Event(), threading.Event()
    words = [f"w{i} " for i in range(60)]
    parts = [sse(chunk(w)) for w in words[:20]] + [Wait(first_half)]
    parts += [sse(chunk(w)) for w in words[20:40]] + [Wait(second_half)]
    parts += [sse(chunk(w)) for w in words[40:]] + [final()]
    fake_gateway.queue(Reply(parts=parts))

    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Count", db_models["flash"].pk))
    await frames_until(socket, "w19 ")
    await socket.disconnect()  # the page is closed: the answer goes on
    first_half.set()
    conversation = await db(lambda: Conversation.objects.get())
    answer = await db(lambda: Message.objects.get(role="assistant"))
    while "w39 " not in generation.running(answer.pk).snapshot().answer:  # the second third was sent
        await asyncio.sleep(0.01)

    reopened = await open_socket(alice, f"/ws/chat/{conversation.pk}/")
    catch_up = await reopened.receive_from(timeout=5)
    second_half.set()
    frames = [catch_up] + await until_done(reopened)
    await reopened.disconnect()
    await no_generation_left()

    # What the page shows: the catch-up's text, then each later delta appended.
    shown = html.unescape(re.search(r'id="msg-\d+-answer-tail"[^>]*>(.*?)</span>', catch_up, re.S).group(1))
    for frame in frames[1:]:
        for appended in re.findall(r'beforeend:#msg-\d+-answer-tail">(.*?)</div>', frame, re.S):
            shown += html.unescape(appended)
    assert shown == "".join(words)


async def test_a_lost_delta_is_healed_by_a_catch_up_before_the_answer_ends(
    alice, db_models, gateway_url, fake_gateway, monkeypatch
):
    gates = [threading.Event() for _ in range(3)]
    fake_gateway.queue(
        Reply(
            parts=[sse(chunk("One ")), Wait(gates[0]), sse(chunk("two ")), Wait(gates[1])]
            + [sse(chunk("three")), Wait(gates[2]), final()]
        )
    )
    # The layer loses the second delta, as Redis pub/sub does while its connection is down.
    layer = events.layer()
    group_send = layer.group_send

    async def lossy_group_send(group, message):
        if message["type"] == "chat.delta" and message["seq"] == 2:
            return
        await group_send(group, message)

    monkeypatch.setattr(layer, "group_send", lossy_group_send)
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Count", db_models["flash"].pk))
    await frames_until(socket, "One ")
    answer = await db(lambda: Message.objects.get(role="assistant"))
    gates[0].set()
    while "two " not in generation.running(answer.pk).snapshot().answer:  # sent, and lost
        await asyncio.sleep(0.01)
    gates[1].set()
    healed = await frames_until(socket, r'id="msg-\d+-answer"[^>]*hx-swap-oob="true"')
    # Before the answer ends, the page's text is whole again: the catch-up replaced it.
    shown = html.unescape(re.search(r'id="msg-\d+-answer-tail"[^>]*>(.*?)</span>', healed[-1], re.S).group(1))
    assert shown == "One two three"
    gates[2].set()
    frames = await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    assert not any("answer-tail" in frame and "three" in frame for frame in frames)  # not shown twice


async def test_two_tabs_stream_the_same_answer_and_the_sidebar_marks_it(alice, db_models, gateway_url, fake_gateway):
    release = threading.Event()
    fake_gateway.queue(Reply(parts=[sse(chunk("Shared ")), Wait(release), sse(chunk("answer")), final()]))
    first = await open_socket(alice)
    other_page = await open_socket(alice)  # another tab, on another page
    await first.send_to(text_data=send("Hi", db_models["flash"].pk))
    await frames_until(first, "Shared </div>")
    conversation = await db(lambda: Conversation.objects.get())
    # The other tab's sidebar got the new conversation, marked as generating.
    marked = await frames_until(other_page, f'id="conversation-{conversation.pk}"')
    assert "generating-marker" in marked[-1] and "afterbegin:#conversation-list" in marked[-1]
    second = await open_socket(alice, f"/ws/chat/{conversation.pk}/")
    await second.receive_from(timeout=5)
    release.set()
    for socket in (first, second):
        frames = await until_done(socket)
        assert "Shared answer" in frames[-1]
    unmarked = await frames_until(other_page, f'id="conversation-{conversation.pk}"(?!.*afterbegin)')
    assert "generating-marker" not in unmarked[-1]
    for socket in (first, second, other_page):
        await socket.disconnect()
    await no_generation_left()


async def test_what_every_tab_shows_alike_is_rendered_once_per_answer(
    alice, db_models, gateway_url, fake_gateway, monkeypatch
):
    renders = {"turn": 0, "done": 0, "sidebar": 0}

    def counted(name, render):
        def wrapper(*args, **kwargs):
            renders[name] += 1
            return render(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(fragments, "turn_for", counted("turn", fragments.turn_for))
    monkeypatch.setattr(fragments, "done_for", counted("done", fragments.done_for))
    monkeypatch.setattr(fragments, "sidebar_item_for", counted("sidebar", fragments.sidebar_item_for))
    fake_gateway.queue(stream_reply(["First answer."]))
    first = await open_socket(alice)
    await first.send_to(text_data=send("Hi", db_models["flash"].pk))
    await until_done(first)
    conversation = await db(lambda: Conversation.objects.get())
    tabs = [await open_socket(alice, f"/ws/chat/{conversation.pk}/") for _ in range(3)]
    for tab in tabs:
        await tab.receive_from(timeout=5)  # the last answer, as each tab opens
    renders.update(turn=0, done=0, sidebar=0)

    fake_gateway.queue(stream_reply(["Second answer."]))
    await first.send_to(text_data=send("Again", db_models["flash"].pk, conversation.pk))
    for socket in (first, *tabs):
        frames = await until_done(socket)
        assert "Second answer." in frames[-1] and "Again" in "".join(frames)
    for socket in (first, *tabs):
        await socket.disconnect()
    await no_generation_left()
    assert renders == {"turn": 1, "done": 1, "sidebar": 1}  # four tabs, one render each


async def test_a_final_state_that_fails_to_render_once_is_rendered_by_each_socket(
    alice, db_models, gateway_url, fake_gateway, monkeypatch
):
    done_for, calls = fragments.done_for, []

    def failing_once(answer_id):
        calls.append(answer_id)
        if len(calls) == 1:
            raise RuntimeError("the template broke")
        return done_for(answer_id)

    monkeypatch.setattr(fragments, "done_for", failing_once)
    fake_gateway.queue(stream_reply(["Still shown."]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", db_models["flash"].pk))
    frames = await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    assert "Still shown." in frames[-1] and "status-complete" in frames[-1]
    assert len(calls) == 2  # the generation's attempt, then the socket's own


async def test_answers_left_streaming_by_a_dead_process_become_interrupted(alice, db_models, settings):
    settings.REDIS_URL = ""  # one process: whatever it does not run is orphaned

    @sync_to_async
    def orphan():
        conversation = Conversation.objects.create(user=alice, title="Before the restart")
        conversation.messages.create(role="user", content="Hi")
        return conversation, conversation.messages.create(
            role="assistant", status="streaming", content="Checkpointed text"
        )

    conversation, answer = await orphan()
    page = await reloaded_page(alice, conversation.pk)
    answer = await db(lambda: Message.objects.get(pk=answer.pk))
    assert answer.status == "interrupted" and answer.content == "Checkpointed text"
    assert "server restarted" in page and "Checkpointed text" in page and RETRY_BUTTON in page
    assert "Stop</button>" not in page


async def test_with_several_processes_only_silent_answers_are_orphans(alice, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.REDIS_URL = "redis://127.0.0.1:6379/0"  # several processes may own answers

    @sync_to_async
    def setup():
        conversation = Conversation.objects.create(user=alice, title="x")
        alive = conversation.messages.create(role="assistant", status="streaming")
        dead = conversation.messages.create(role="assistant", status="streaming")
        Message.objects.filter(pk=dead.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
        return alive, dead

    alive, dead = await setup()
    assert await db(lambda: generation.sweep_orphans(alice.pk)) == 1
    assert await db(lambda: Message.objects.get(pk=alive.pk).status) == "streaming"
    assert await db(lambda: Message.objects.get(pk=dead.pk).status) == "interrupted"


# --- limits and bad frames ---------------------------------------------------------------


async def test_it_limits_concurrent_generations(alice, db_models, gateway_url, fake_gateway, settings):
    settings.MAX_CONCURRENT_GENERATIONS = 1
    release = threading.Event()
    fake_gateway.queue(Reply(parts=[sse(chunk("Busy")), Wait(release), final()]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("One", db_models["flash"].pk))
    await frames_until(socket, "Busy</div>")
    await socket.send_to(text_data=send("Another chat", db_models["flash"].pk))
    reply = await socket.receive_from(timeout=5)
    assert "already have 1 answers being generated; the limit is 1" in reply
    release.set()
    await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    assert await db(lambda: Conversation.objects.count()) == 1


async def test_it_limits_messages_per_minute(alice, db_models, gateway_url, fake_gateway, settings):
    settings.MAX_MESSAGES_PER_MINUTE = 2
    socket = await open_socket(alice)
    for _ in range(2):
        await socket.send_to(text_data=send("Hi", db_models["flash"].pk))
        await until_done(socket)
    await socket.send_to(text_data=send("Hi", db_models["flash"].pk))
    reply = await socket.receive_from(timeout=5)
    await socket.disconnect()
    await no_generation_left()
    assert "2 messages in the last minute; the limit is 2" in reply
    assert await db(lambda: Message.objects.filter(role="user").count()) == 2


async def test_it_refuses_frames_over_the_size_limit(alice, db_models, gateway_url, fake_gateway, settings):
    settings.MAX_FRAME_CHARS = 1000
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("x" * 2000, db_models["flash"].pk))
    assert "too large to send" in await socket.receive_from(timeout=5)
    await socket.send_to(text_data=send("small", db_models["flash"].pk))
    await until_done(socket)
    await socket.disconnect()
    await no_generation_left()


async def test_a_socket_gives_up_waiting_for_a_generation_nobody_runs(alice, settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"  # it may run elsewhere: not swept at once
    settings.STREAM_CATCH_UP_TIMEOUT = 0.2

    @sync_to_async
    def setup():
        conversation = Conversation.objects.create(user=alice, title="x")
        conversation.messages.create(role="user", content="Hi")
        conversation.messages.create(role="assistant", status="streaming", content="Checkpoint")
        return conversation

    conversation = await setup()
    socket = await open_socket(alice, f"/ws/chat/{conversation.pk}/")
    frame = await socket.receive_from(timeout=5)
    await socket.disconnect()
    assert "Checkpoint" in frame and 'class="message assistant status-streaming"' in frame
