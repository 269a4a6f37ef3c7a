"""The chat socket end to end: consumer, generation task, fake gateway on a real socket, database."""

from __future__ import annotations

import html
import json
import re
import threading
from decimal import Decimal

import pytest

from conversations.models import Conversation, CostLog, GatewayModel, Message
from tests.chat import (
    connect,
    db,
    frames_until,
    no_generation_left,
    open_socket,
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

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("shared_key_allowed", "no_retries")]


@pytest.fixture
def flash(db_models):
    return db_models["flash"]


@pytest.fixture
def thinker(db_models):
    return db_models["thinker"]


async def test_it_streams_thinking_and_answer_and_stores_them(alice, thinker, gateway_url, fake_gateway):
    fake_gateway.queue(stream_reply(["Hello", " world"], thinking=["Let me ", "think."]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi there", thinker.pk))
    frames = await until_done(socket)
    await socket.disconnect()
    await no_generation_left()

    conversation = await db(lambda: Conversation.objects.get(user=alice))
    question, answer = await db(lambda: list(conversation.messages.all()))
    assert (question.role, question.content) == ("user", "Hi there")
    assert (answer.content, answer.thinking, answer.status) == ("Hello world", "Let me think.", "complete")
    assert answer.thinking_seconds is not None
    assert conversation.title == "Hi there"

    stream = "".join(frames)
    assert f'data-url="/c/{conversation.pk}/"' in frames[0]  # the address bar follows at once
    assert "Let me " in stream and "Hello" in stream
    assert "Thinking · " in stream
    assert "$0.0001554" in frames[-1] and "536 tokens" in frames[-1]

    # What the gateway received: the site key, the model, the input, thinking on, no history.
    (request,) = fake_gateway.requests
    assert request.headers["x-api-key"] == "sk_test_site_key"
    assert request.json["service_name"] == "google-gemini"
    assert request.json["model_name"] == "gemini-3-pro-thinking-preview"
    assert request.json["input"] == [{"type": "text", "name": "input", "content": "Hi there"}]
    assert request.json["parameters"] == {"enable_thinking": True}
    assert "history" not in request.json


async def test_it_sends_earlier_turns_as_history(alice, flash, gateway_url, fake_gateway):
    fake_gateway.queue(stream_reply(["First answer"]), stream_reply(["Second answer"]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("First question", flash.pk))
    await until_done(socket)
    conversation = await db(lambda: Conversation.objects.get(user=alice))
    await socket.send_to(text_data=send("Second question", flash.pk, conversation.pk))
    await until_done(socket)
    await socket.disconnect()
    await no_generation_left()

    second = fake_gateway.requests[1].json
    assert second["input"][0]["content"] == "Second question"
    assert second["history"] == [
        {"role": "user", "content": [{"type": "text", "name": "input", "content": "First question"}]},
        {"role": "assistant", "content": [{"type": "text", "name": "output", "content": "First answer"}]},
    ]
    assert "parameters" not in second  # not a thinking model
    assert await db(lambda: Conversation.objects.count()) == 1
    assert await db(lambda: Message.objects.count()) == 4


async def test_it_records_exact_costs_once_per_generation(alice, flash, gateway_url, fake_gateway):
    fake_gateway.queue(
        stream_reply(
            ["ok"],
            final_kwargs={
                "cost_input": "1.5e-07",
                "cost_output": "0.0001536",
                "cost_total": "1.5375E-4",
                "warnings": ["Rate limit: 3 requests left this minute"],
            },
        )
    )
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", flash.pk))
    frames = await until_done(socket)
    await socket.disconnect()
    await no_generation_left()

    log = await db(lambda: CostLog.objects.get())
    assert log.cost_input == Decimal("1.5e-07")
    assert log.cost_output == Decimal("0.0001536")
    assert log.cost_total == Decimal("0.00015375")
    assert (log.input_tokens, log.output_tokens, log.total_tokens) == (24, 512, 536)
    assert log.user_id == alice.pk and log.model_name == "gemini-2.0-flash"
    assert log.warnings == ["Rate limit: 3 requests left this minute"]
    assert log.final_chunk["cost"]["input"] == "0.00000015"
    assert "$0.00015375" in frames[-1]
    assert "Rate limit: 3 requests left this minute" in frames[-1]


async def test_it_coalesces_many_small_chunks_into_few_frames(alice, flash, gateway_url, fake_gateway):
    pieces = [f"w{i} " for i in range(400)]
    fake_gateway.queue(stream_reply(pieces))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", flash.pk))
    frames = await until_done(socket)
    await socket.disconnect()
    await no_generation_left()

    deltas = [f for f in frames if "beforeend:#msg-" in f and "-answer" in f]
    streamed = "".join(html.unescape(f.split('-answer-tail">', 1)[1].rsplit("</div>", 1)[0]) for f in deltas)
    assert streamed == "".join(pieces)  # nothing lost, nothing repeated
    assert len(deltas) < 100  # many chunks per frame
    answer = await db(lambda: Message.objects.get(role="assistant"))
    assert answer.content == "".join(pieces)


async def test_it_escapes_streamed_text(alice, flash, gateway_url, fake_gateway):
    fake_gateway.queue(stream_reply(['<img src=x onerror="alert(1)">', "<script>alert(2)</script>"]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", flash.pk))
    frames = await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    stream = "".join(frames)
    assert "<script>alert(2)" not in stream and "<img src=x" not in stream
    assert "&lt;script&gt;alert(2)" in stream


async def test_it_checkpoints_partial_text_while_streaming(alice, flash, gateway_url, fake_gateway, settings):
    settings.STREAM_CHECKPOINT_INTERVAL = 0.05
    release = threading.Event()
    fake_gateway.queue(Reply(parts=[sse(chunk("Partial ")), Pause(0.1), sse(chunk("text")), Wait(release), final()]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", flash.pk))
    await frames_until(socket, "text</div>")

    # A reload now shows what arrived so far, from the database.
    for _ in range(100):
        answer = await db(lambda: Message.objects.get(role="assistant"))
        if answer.content == "Partial text":
            break
        await socket.receive_nothing(timeout=0.05)
    assert answer.content == "Partial text" and answer.status == "streaming"
    release.set()
    await until_done(socket)
    await socket.disconnect()
    await no_generation_left()


async def test_it_writes_checkpoints_by_time_not_per_chunk(
    alice, flash, gateway_url, fake_gateway, settings, monkeypatch
):
    from conversations.relay.generation import Generation

    settings.STREAM_CHECKPOINT_INTERVAL = 0.2
    calls = []
    original = Generation._checkpoint

    async def counting(self):
        calls.append(1)
        await original(self)

    monkeypatch.setattr(Generation, "_checkpoint", counting)
    parts = []
    for i in range(300):
        parts += [sse(chunk(f"{i} ")), Pause(0.002)]
    fake_gateway.queue(Reply(parts=parts + [final()]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", flash.pk))
    await until_done(socket, timeout=20)
    await socket.disconnect()
    await no_generation_left()
    assert 1 <= len(calls) < 30  # ~one per 0.2 s, never one per chunk


@pytest.mark.parametrize(
    "reply, status, message, kept",
    [
        (
            Reply(parts=[sse(chunk("Half an ")), sse(chunk("answer")), Cut()]),
            "interrupted",
            "connection",
            "Half an answer",
        ),
        (Reply(parts=[sse(chunk("No final"))]), "interrupted", "before it was complete", "No final"),
        (
            Reply(parts=[sse(chunk("Some text")), sse({"error": "provider overloaded"}, event="error")]),
            "interrupted",
            "provider overloaded",
            "Some text",
        ),
        (error_reply(502, {"detail": "upstream provider is down"}), "failed", "upstream provider is down", ""),
        (error_reply(422, {"detail": [{"loc": ["body", "model_name"], "msg": "unknown"}]}), "failed", "unknown", ""),
    ],
    ids=["cut", "no-final-chunk", "error-event", "http-502", "http-422"],
)
async def test_it_keeps_what_arrived_when_the_gateway_fails(
    alice, flash, gateway_url, fake_gateway, reply, status, message, kept
):
    fake_gateway.queue(reply)
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", flash.pk))
    frames = await until_done(socket)
    answer = await db(lambda: Message.objects.get(role="assistant"))
    assert answer.status == status
    assert answer.content == kept
    assert message in answer.error
    assert html.escape(message) in frames[-1] or message in frames[-1]
    assert await db(lambda: CostLog.objects.count()) == 0  # no final chunk, no ledger row
    assert "No cost reported" in frames[-1]

    # The socket stays usable.
    fake_gateway.queue(stream_reply(["Fine again"]))
    conversation = await db(lambda: Conversation.objects.get())
    await socket.send_to(text_data=send("Again", flash.pk, conversation.pk))
    await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    assert await db(lambda: Message.objects.filter(status="complete", content="Fine again").count()) == 1


async def test_it_says_when_the_gateway_cannot_be_reached(alice, flash, settings):
    settings.UPSTREAM_BASE_URL = "http://127.0.0.1:9/api/v1"  # discard port: nothing listens
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", flash.pk))
    frames = await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    answer = await db(lambda: Message.objects.get(role="assistant"))
    assert answer.status == "failed"
    assert "connect" in answer.error.lower()
    assert "connect" in frames[-1].lower()


async def test_it_stops_a_generation_and_keeps_the_partial_answer(alice, flash, gateway_url, fake_gateway):
    never = threading.Event()
    fake_gateway.queue(Reply(parts=[sse(chunk("Partial")), Wait(never, timeout=20), final()]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", flash.pk))
    frames = await frames_until(socket, "Partial</div>")
    assert "Stop</button>" in "".join(frames)
    conversation = await db(lambda: Conversation.objects.get())
    await socket.send_to(text_data=json.dumps({"action": "stop", "conversation": conversation.pk}))
    frames = await until_done(socket)
    await socket.disconnect()
    await no_generation_left()

    assert fake_gateway.closed.wait(5), "the gateway request was not closed"
    answer = await db(lambda: Message.objects.get(role="assistant"))
    assert (answer.status, answer.content) == ("stopped", "Partial")
    assert "Stopped." in frames[-1] and "Send</button>" in frames[-1]


async def test_a_second_socket_catches_up_and_sees_the_rest(alice, flash, gateway_url, fake_gateway, monkeypatch):
    from channels.layers import get_channel_layer

    # Which channels join groups, and the deltas sent to them.
    layer = get_channel_layer()
    group_add, group_send = layer.group_add, layer.group_send
    joined, deltas = [], []

    async def recording_add(group, channel):
        joined.append(channel)
        await group_add(group, channel)

    async def recording_send(group, event):
        if event["type"] == "chat.delta":
            deltas.append(event)
        await group_send(group, event)

    monkeypatch.setattr(layer, "group_add", recording_add)
    monkeypatch.setattr(layer, "group_send", recording_send)

    release = threading.Event()
    fake_gateway.queue(
        Reply(parts=[sse(chunk("One ")), sse(chunk("two ")), Wait(release), sse(chunk("three")), final()])
    )
    first = await open_socket(alice)
    await first.send_to(text_data=send("Count", flash.pk))
    await frames_until(first, "two </div>|One two </div>")
    conversation = await db(lambda: Conversation.objects.get())

    already = len(joined)
    second = await open_socket(alice, f"/ws/chat/{conversation.pk}/")
    (second_channel,) = set(joined[already:])
    catch_up = await second.receive_from(timeout=5)
    (caught_up,) = re.findall(r'-answer-tail" class="live-tail">(.*?)</span>', catch_up)
    assert caught_up == "One two "
    # A delta the catch-up already holds reaches the socket again, as one sent while it
    # joined does: it must not be shown twice.
    await layer.send(second_channel, deltas[-1])
    release.set()
    frames = {socket: "".join(await until_done(socket)) for socket in (first, second)}
    for socket in (first, second):
        await socket.disconnect()
    await no_generation_left()

    def appended(stream):
        return "".join(re.findall(r'beforeend:#msg-\d+-answer-tail">(.*?)</div>', stream))

    assert appended(frames[first]) == "three"  # the rest of what it read above
    assert caught_up + appended(frames[second]) == "One two three"  # nothing repeated, nothing lost


# --- bad input: a clear message, nothing stored, the socket stays usable ----------------


@pytest.mark.parametrize(
    "frame, message",
    [
        ("this is not json", "could not be read"),
        ("[1, 2]", "could not be read"),
        (json.dumps({"action": "dance"}), "Unknown action"),
        (json.dumps({"action": "send", "message": "   \n ", "model": 1}), "Type a message first"),
        (json.dumps({"action": "send", "model": 1}), "Type a message first"),
        (json.dumps({"action": ["send"]}), "Unknown action"),
        # Frames that once crashed the socket (1011 and a traceback in the log).
        ('{"action": "send", "message": ' + "[" * 50_000 + "]" * 50_000 + "}", "could not be read"),
        ('{"action": "stop", "conversation": Infinity}', "could not be read"),
        ('{"action": "select", "message": NaN}', "could not be read"),
        ('{"action": "stop", "conversation": 1e400}', "could not be read"),
        (json.dumps({"action": "stop", "conversation": 10**30}), "conversation was not found"),
        (json.dumps({"action": "stop", "conversation": 2**63}), "conversation was not found"),
        (json.dumps({"action": "select", "message": str(10**30)}), "version was not found"),
        (json.dumps({"action": "retry", "message": -(10**30)}), "answer was not found"),
        (json.dumps({"action": "send", "message": "Hi", "model": 10**30}), "model is not available"),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "unknown-action",
        "blank-message",
        "no-message",
        "action-not-a-string",
        "nested-50000-deep",
        "infinity-id",
        "nan-id",
        "1e400-id",
        "30-digit-id",
        "id-past-64-bits",
        "30-digit-id-as-text",
        "negative-30-digit-id",
        "30-digit-model",
    ],
)
async def test_it_refuses_bad_frames(alice, flash, gateway_url, fake_gateway, frame, message):
    socket = await open_socket(alice)
    await socket.send_to(text_data=frame)
    reply = await socket.receive_from(timeout=5)
    assert message in reply and 'id="chat-error"' in reply
    assert await db(lambda: Message.objects.count()) == 0
    # Still usable.
    await socket.send_to(text_data=send("Hello", flash.pk))
    await until_done(socket)
    await socket.disconnect()
    await no_generation_left()


@pytest.mark.parametrize(
    "fields",
    [{"message": "Hi \ud800"}, {"message": "Hi", "settings_included": "1", "system_prompt": "Be \udc00 brief"}],
    ids=["in-the-text", "in-the-system-prompt"],
)
async def test_it_refuses_a_lone_surrogate(alice, flash, gateway_url, fake_gateway, fields):
    """Half of a UTF-16 pair (JSON's \\ud800) is no character: it cannot be stored or shown."""
    socket = await open_socket(alice)
    await socket.send_to(text_data=json.dumps({"action": "send", "model": flash.pk, **fields}))
    reply = await socket.receive_from(timeout=5)
    assert "not valid Unicode" in reply and 'id="chat-error"' in reply
    assert await db(lambda: Message.objects.count()) == 0
    await socket.send_to(text_data=send("Hello", flash.pk))
    await until_done(socket)
    await socket.disconnect()
    await no_generation_left()


async def test_it_survives_ids_past_64_bits_in_the_sidebar_and_the_address(alice, flash, gateway_url, fake_gateway):
    # A page showing conversation 10**30 (no such thing): refused, not crashed.
    socket = await connect(alice, f"/ws/chat/{10**30}/")
    assert not (await socket.connect())[0]
    socket = await open_socket(alice)
    await socket.send_to(text_data=json.dumps({"action": "sidebar", "conversations": [10**30, -(2**64), True]}))
    # Nothing to say about them; the next message is answered as usual.
    await socket.send_to(text_data=send("Hello", flash.pk))
    await until_done(socket)
    await socket.disconnect()
    await no_generation_left()


async def test_it_refuses_a_message_over_the_limit(alice, flash, settings):
    settings.MAX_MESSAGE_CHARS = 20
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("x" * 21, flash.pk))
    reply = await socket.receive_from(timeout=5)
    await socket.disconnect()
    assert "21 characters" in reply and "limit is 20" in reply
    assert await db(lambda: Message.objects.count()) == 0


async def test_it_refuses_unknown_and_disabled_models(alice, db_models):
    # Image models are chat models now (tests/test_images.py); disabled ones are not.
    await db(
        lambda: GatewayModel.objects.filter(pk__in=[db_models["flash"].pk, db_models["image"].pk]).update(enabled=False)
    )
    socket = await open_socket(alice)
    for model in (db_models["flash"].pk, db_models["image"].pk, 999999, "abc", None):
        await socket.send_to(text_data=send("Hi", model))
        reply = await socket.receive_from(timeout=5)
        assert "model is not available" in reply
    await socket.disconnect()
    assert await db(lambda: Message.objects.count()) == 0


async def test_it_refuses_a_second_generation_in_the_same_conversation(alice, flash, gateway_url, fake_gateway):
    release = threading.Event()
    fake_gateway.queue(Reply(parts=[sse(chunk("Busy")), Wait(release), final()]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("One", flash.pk))
    await frames_until(socket, "Busy</div>")
    conversation = await db(lambda: Conversation.objects.get())
    await socket.send_to(text_data=send("Two", flash.pk, conversation.pk))
    reply = await socket.receive_from(timeout=5)
    assert "still being generated" in reply
    release.set()
    await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    assert await db(lambda: Message.objects.filter(role="user").count()) == 1


# --- access ------------------------------------------------------------------------------


async def test_it_refuses_anonymous_sockets():
    socket = await connect(None)
    connected, _ = await socket.connect()
    assert not connected


async def test_it_refuses_sockets_from_another_origin(alice):
    socket = await connect(alice, origin="https://evil.example")
    connected, _ = await socket.connect()
    assert not connected


async def test_bob_cannot_watch_send_to_or_stop_alices_conversation(alice, bob, flash, gateway_url, fake_gateway):
    conversation = await db(lambda: Conversation.objects.create(user=alice, title="Alice's"))

    watcher = await connect(bob, f"/ws/chat/{conversation.pk}/")
    connected, _ = await watcher.connect()
    assert not connected

    socket = await open_socket(bob)
    await socket.send_to(text_data=send("Hi", flash.pk, conversation.pk))
    assert "conversation was not found" in await socket.receive_from(timeout=5)
    await socket.send_to(text_data=json.dumps({"action": "stop", "conversation": conversation.pk}))
    assert "conversation was not found" in await socket.receive_from(timeout=5)
    await socket.disconnect()
    assert await db(lambda: Message.objects.count()) == 0
    assert fake_gateway.requests == []


async def test_text_arriving_during_the_last_flush_still_goes_as_a_delta(
    alice, flash, gateway_url, fake_gateway, monkeypatch
):
    """The reader can end while the sender is busy sending a delta: what it added then
    must go as one more delta, not only in the final render (seen on Redis, whose sends
    take longer)."""
    import asyncio

    from channels.layers import get_channel_layer

    from conversations.relay import generation

    layer = get_channel_layer()
    group_send = layer.group_send
    held = []

    async def slow_first_delta(group, event):
        if event["type"] == "chat.delta" and not held:
            held.append(event)
            (running,) = generation._running.values()
            while not running._reader.done():  # the rest arrives meanwhile
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.02)
        await group_send(group, event)

    monkeypatch.setattr(layer, "group_send", slow_first_delta)
    fake_gateway.queue(Reply(parts=[sse(chunk("One ")), Pause(0.2), sse(chunk("two")), final()]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Count", flash.pk))
    frames = await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    deltas = "".join(re.findall(r'beforeend:#msg-\d+-answer-tail">(.*?)</div>', "".join(frames)))
    assert deltas == "One two"


async def test_a_chunk_larger_than_a_socket_message_arrives_in_frames_that_fit(
    alice, db_models, gateway_url, fake_gateway, settings
):
    settings.SOCKET_HTML_MAX_BYTES = 6_000  # 1,000 characters of text a frame
    text = "word " * 1_000  # 5,000 characters in one chunk
    fake_gateway.queue(stream_reply([text]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Long", db_models["flash"].pk))
    frames = await until_done(socket)
    await socket.disconnect()
    deltas = [f for f in frames if 'hx-swap-oob="beforeend:#msg-' in f]
    assert len(deltas) >= 5
    assert all(len(f.encode()) <= 6_000 + 200 for f in deltas)
    streamed = "".join(html.unescape(re.sub(r"<[^>]+>", "", f)) for f in deltas)
    assert streamed == text
