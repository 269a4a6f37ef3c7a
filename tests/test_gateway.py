"""The gateway adapter, against the fake gateway over a real socket."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import threading
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import httpx
import pytest

from conversations.gateway import (
    Delta,
    ErrorKind,
    Extra,
    Final,
    GatewayError,
    Skipped,
    build_body,
    default_timeout,
    error_from_response,
    generate,
    get_client,
    history_turn,
    parse_decimal,
    stream_generate,
)
from tests.fakegateway import (
    Cut,
    Pause,
    Reply,
    Wait,
    chunk,
    error_reply,
    final,
    generate_reply,
    sse,
    stream_reply,
)

KEY = "sk_test_4f9a2b7c1d0e"
BODY = build_body(service_name="google-gemini", model_name="gemini-2.0-flash", prompt="Hi")


@pytest.fixture
async def run(fake_gateway):
    """run(*parts) queues a stream of these parts and returns (items, error)."""

    async def run(*parts, body=BODY, client=None, base_url=None):
        if parts:
            fake_gateway.queue(Reply(parts=list(parts)))
        items = []
        try:
            async for item in stream_generate(
                base_url=base_url or fake_gateway.base_url, api_key=KEY, body=body, client=client
            ):
                items.append(item)
        except GatewayError as exc:
            return items, exc
        return items, None

    yield run
    await get_client().aclose()  # the loop's shared client: don't leak its sockets


def texts(items):
    return [(item.name, item.text) for item in items if isinstance(item, Delta)]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- The request -------------------------------------------------------------------------


async def test_it_posts_the_body_and_headers(run, fake_gateway):
    items, error = await run()

    assert error is None
    [request] = fake_gateway.requests
    assert request.path == "/api/v1/generate/stream"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "service_name": "google-gemini",
        "model_name": "gemini-2.0-flash",
        "input": [{"type": "text", "name": "input", "content": "Hi"}],
    }


async def test_it_accepts_a_base_url_with_a_trailing_slash(run, fake_gateway):
    items, error = await run(base_url=fake_gateway.base_url + "/")

    assert error is None
    assert fake_gateway.requests[0].path == "/api/v1/generate/stream"


async def test_it_sends_history_and_parameters_when_given(run, fake_gateway):
    body = build_body(
        service_name="google-gemini",
        model_name="gemini-3-pro-thinking-preview",
        prompt="And now?",
        history=[history_turn("user", "Hi"), history_turn("assistant", "Hello!")],
        parameters={"enable_thinking": True},
    )

    items, error = await run(body=body)

    assert error is None
    assert fake_gateway.requests[0].json == {
        "service_name": "google-gemini",
        "model_name": "gemini-3-pro-thinking-preview",
        "input": [{"type": "text", "name": "input", "content": "And now?"}],
        "history": [
            {"role": "user", "content": [{"type": "text", "name": "input", "content": "Hi"}]},
            {
                "role": "assistant",
                "content": [{"type": "text", "name": "output", "content": "Hello!"}],
            },
        ],
        "parameters": {"enable_thinking": True},
    }


def test_it_leaves_out_empty_history_and_parameters():
    body = build_body(service_name="s", model_name="m", prompt="p", history=[], parameters={})

    assert body == {
        "service_name": "s",
        "model_name": "m",
        "input": [{"type": "text", "name": "input", "content": "p"}],
    }


def test_it_builds_history_turns():
    assert history_turn("user", "Q") == {
        "role": "user",
        "content": [{"type": "text", "name": "input", "content": "Q"}],
    }
    assert history_turn("assistant", "A") == {
        "role": "assistant",
        "content": [{"type": "text", "name": "output", "content": "A"}],
    }
    with pytest.raises(ValueError):
        history_turn("system", "x")


# --- Parsing the stream --------------------------------------------------------------------


async def test_it_yields_thinking_then_output_then_final(run, fake_gateway):
    fake_gateway.queue(stream_reply(["The robot", " paints."], thinking=["Let me", " think"]))

    items, error = await run()

    assert error is None
    assert items[:4] == [
        Delta("thinking", "Let me"),
        Delta("thinking", " think"),
        Delta("output", "The robot"),
        Delta("output", " paints."),
    ]
    [last] = items[4:]
    assert isinstance(last, Final)
    assert (last.input_tokens, last.output_tokens, last.total_tokens) == (24, 512, 536)
    assert last.cost_input == Decimal("0.0000018")
    assert last.cost_output == Decimal("0.0001536")
    assert last.cost_total == Decimal("0.0001554")
    assert last.warnings == []
    assert last.raw["final"] is True
    assert last.raw["cost"]["total"] == Decimal("0.0001554")


async def test_it_keeps_the_index_of_a_delta(run):
    items, error = await run(sse(chunk("second item", index=1)), final())

    assert items[0] == Delta("output", "second item", 1)


async def test_it_reads_crlf_line_endings(run):
    items, error = await run(
        sse(chunk("a"), newline="\r\n"),
        b": ping\r\n\r\n",
        sse(chunk("b"), newline="\r\n"),
        final(newline="\r\n"),
    )

    assert error is None
    assert texts(items) == [("output", "a"), ("output", "b")]
    assert isinstance(items[-1], Final)


async def test_it_reads_bare_cr_line_endings(run):
    event = sse(chunk("b"), newline="\r")
    items, error = await run(
        sse(chunk("a"), newline="\r"),
        # A CR at the end of one write and another at the start of the next are two
        # line breaks (not one CRLF): the event must still end there.
        event[:-1],
        event[-1:],
        final(newline="\r"),
    )

    assert error is None
    assert texts(items) == [("output", "a"), ("output", "b")]
    assert isinstance(items[-1], Final)


async def test_it_ignores_comment_and_keep_alive_lines(run):
    items, error = await run(
        b": ping\n\n",
        sse(chunk("a")),
        b":\n\n",
        b": keep-alive\n",
        sse(chunk("b")),
        b": ping\n\n",
        final(),
    )

    assert error is None
    assert items[:2] == [Delta("output", "a"), Delta("output", "b")]
    assert len(items) == 3
    assert isinstance(items[-1], Final)


async def test_it_accepts_event_id_and_retry_fields(run):
    data = json.dumps(chunk("a")).encode()
    items, error = await run(
        b"retry: 3000\n\n",
        b"event: message\nid: 1\ndata: " + data + b"\n\n",
        b"id: 2\nevent: chunk\nretry: 500\ndata:" + json.dumps(chunk("b")).encode() + b"\n\n",
        b"event: ping\n\n",
        final(),
    )

    assert error is None
    assert items[:2] == [Delta("output", "a"), Delta("output", "b")]
    assert len(items) == 3
    assert isinstance(items[-1], Final)


async def test_it_joins_multi_line_data(run):
    items, error = await run(
        sse('{"type": "text", "name": "output",\n"content": "two\\nlines"}'),
        sse("not\njson"),
        final(),
    )

    assert error is None
    assert items[0] == Delta("output", "two\nlines")
    assert items[1] == Skipped("not\njson")  # the data lines are joined with "\n"
    assert isinstance(items[2], Final)


async def test_it_decodes_utf8_split_across_writes(run):
    event = sse(chunk("héllo 🙂 a\u2028b"))
    cut = event.index("🙂".encode()) + 2  # in the middle of the emoji's bytes

    items, error = await run(event[:cut], Pause(0.05), event[cut:], final())

    assert error is None
    assert items[0] == Delta("output", "héllo 🙂 a\u2028b")  # U+2028 is not a line break


async def test_it_parses_exponent_costs_exactly(run):
    wire = final(cost_input="1.5e-07", cost_output="2.5E-7", cost_total="4e-7")
    assert b'"input": 1.5e-07' in wire
    more_digits_than_a_float = "1.2345678901234567890123e-07"

    items, error = await run(wire)

    [last] = items
    assert last.cost_input == Decimal("1.5E-7")
    assert str(last.cost_input) == "1.5E-7"
    assert last.cost_output == Decimal("2.5E-7")
    assert last.cost_input + last.cost_output == last.cost_total

    items, error = await run(final(cost_total=more_digits_than_a_float))

    assert items[0].cost_total == Decimal(more_digits_than_a_float)


async def test_it_sums_costs_as_decimals(run):
    items, error = await run(final(cost_input="0.1", cost_output="0.2", cost_total="0.3"))

    [last] = items
    assert isinstance(last.cost_input, Decimal)
    assert last.cost_input + last.cost_output == Decimal("0.3")
    assert last.cost_total == Decimal("0.3")


async def test_it_keeps_warnings_as_text(run):
    warnings = ["Rate limit: 80% used", {"message": "Slow down"}, {"detail": "Quota low"}, {"code": 7}, 42]

    items, error = await run(sse(chunk("a")), final(warnings=warnings))

    assert error is None
    assert items[-1].warnings == [
        "Rate limit: 80% used",
        "Slow down",
        "Quota low",
        '{"code": 7}',
        "42",
    ]


async def test_it_reads_a_final_chunk_without_usage_or_cost(run):
    items, error = await run(sse(chunk("a")), sse({"final": True}))

    assert error is None
    assert items[-1] == Final(None, None, None, None, None, None, [], {"final": True})


async def test_it_keeps_text_carried_by_the_final_chunk(run):
    last = chunk("!", is_final=True, usage={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3})

    items, error = await run(sse(chunk("a")), sse(last))

    assert error is None
    assert items[:2] == [Delta("output", "a"), Delta("output", "!")]
    assert items[2].total_tokens == 3


async def test_it_does_not_take_an_is_final_content_chunk_for_the_final_chunk(run):
    items, error = await run(sse(chunk("a")), sse(chunk("b", done=True, is_final=True)), final())

    assert error is None
    assert items[:2] == [Delta("output", "a"), Delta("output", "b")]
    [last] = items[2:]
    assert last.total_tokens == 536  # the real final chunk, read after the content chunk


async def test_it_yields_metadata_image_and_unknown_chunks_as_extras(run):
    metadata = {"type": "metadata", "name": "metadata", "content": {"model_version": "2.0"}}
    image = {"type": "image", "name": "output", "content": "iVBORw0KGgo=", "index": 1}
    unknown = {"type": "audio", "name": "output", "content": "UklGRg=="}

    items, error = await run(sse(chunk("a")), sse(metadata), sse(image), sse(unknown), final())

    assert error is None
    assert items[1:4] == [Extra(metadata), Extra(image), Extra(unknown)]
    assert isinstance(items[4], Final)


async def test_it_skips_empty_content(run):
    items, error = await run(sse(chunk("a")), sse(chunk("", done=True)), final())

    assert error is None
    assert items[0] == Delta("output", "a")
    assert isinstance(items[1], Final)


async def test_it_skips_malformed_data_and_goes_on(run):
    items, error = await run(
        sse(chunk("a")),
        b"data: {not json\n\n",
        b"data: [1, 2]\n\n",
        b'data: "a string"\n\n',
        sse(chunk("b")),
        final(),
    )

    assert error is None
    assert items[:5] == [
        Delta("output", "a"),
        Skipped("{not json"),
        Skipped("[1, 2]"),
        Skipped('"a string"'),
        Delta("output", "b"),
    ]
    assert isinstance(items[5], Final)


async def test_it_stops_reading_after_the_final_chunk(run):
    items, error = await run(sse(chunk("a")), final(), sse(chunk("late")))

    assert error is None
    assert texts(items) == [("output", "a")]
    assert isinstance(items[-1], Final)


# --- Errors during the stream ----------------------------------------------------------------


async def test_it_fails_as_incomplete_after_the_deltas_when_no_final_chunk_comes(run):
    items, error = await run(sse(chunk("a")), sse(chunk("b")))

    assert texts(items) == [("output", "a"), ("output", "b")]
    assert error.kind == "incomplete"
    assert str(error) == "The gateway's answer ended before it was complete."


@pytest.mark.parametrize(
    "event",
    [
        sse({"message": "provider crashed"}, event="error"),
        sse("provider crashed", event="error"),
        sse({"error": "provider crashed"}),
        sse({"error": {"message": "provider crashed", "code": 500}}),
        sse({"type": "error", "message": "provider crashed"}),
        sse({"type": "error", "name": "output", "content": "provider crashed"}),
    ],
    ids=["error event json", "error event text", "error string", "error object", "type error", "type error content"],
)
async def test_it_fails_on_an_error_during_the_stream(run, event):
    items, error = await run(sse(chunk("a")), event, sse(chunk("b")), final())

    assert items == [Delta("output", "a")]
    assert error.kind == "stream_error"
    assert "provider crashed" in str(error)


async def test_it_fails_when_the_connection_is_cut(run):
    items, error = await run(sse(chunk("a")), sse(chunk("b")), Cut())

    assert texts(items) == [("output", "a"), ("output", "b")]
    assert error.kind == "cut"
    assert str(error) == "The connection to the gateway broke during the answer."


async def test_it_fails_on_a_read_timeout(run):
    # The shared client (this loop's first), as the relay uses it: the timeout is its transport's.
    client = get_client(default_timeout(read=0.3))
    items, error = await run(sse(chunk("a")), Pause(3), final(), client=client)

    assert items == [Delta("output", "a")]
    assert error.kind == "timeout"
    assert str(error) == "The gateway did not answer in time (timed out waiting for data)."
    assert KEY not in str(error)


async def test_it_fails_when_nothing_listens(run):
    base_url = f"http://127.0.0.1:{free_port()}/api/v1"

    items, error = await run(base_url=base_url)

    assert items == []
    assert error.kind == "connect"
    assert str(error).startswith(f"Could not connect to the gateway at {base_url}")
    assert KEY not in str(error)


async def test_it_does_not_show_credentials_in_the_base_url(run):
    base_url = f"http://user:hunter2@127.0.0.1:{free_port()}/api/v1"

    items, error = await run(base_url=base_url)

    assert error.kind == "connect"
    assert "hunter2" not in str(error)


async def _misbehave(how: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")
    )
    await reader.readexactly(length)  # all of it: closing on unread bytes would reset
    if how == "answers in another protocol":
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    elif how == "resets the connection mid-answer":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        event = sse(chunk("a"))
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


# Whatever a broken gateway does, the shared client's failure is a GatewayError that says
# the connection broke, never a timeout nor an error from the HTTP library underneath.
@pytest.mark.parametrize(
    "how", ["closes before answering", "answers in another protocol", "resets the connection mid-answer"]
)
async def test_it_fails_as_cut_when_the_gateway_breaks_the_connection(run, how):
    server = await asyncio.start_server(lambda r, w: _misbehave(how, r, w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        items, error = await run(base_url=f"http://127.0.0.1:{port}/api/v1")

    assert isinstance(error, GatewayError)
    assert error.kind == "cut"


async def test_it_fails_when_the_answer_is_not_an_event_stream(run, fake_gateway):
    fake_gateway.queue(error_reply(200, {"error": "use /generate for this model"}))

    items, error = await run()

    assert error.kind == "http"
    assert "use /generate for this model" in str(error)


async def test_it_releases_the_connection_when_the_caller_stops_early(fake_gateway):
    release = threading.Event()
    fake_gateway.queue(Reply(parts=[sse(chunk("a")), Wait(release), final()]))
    client = get_client()
    try:
        stream = stream_generate(base_url=fake_gateway.base_url, api_key=KEY, body=BODY, client=client)
        async with aclosing(stream):
            async for item in stream:
                assert item == Delta("output", "a")
                break
        assert await asyncio.to_thread(fake_gateway.closed.wait, 5)
    finally:
        release.set()
        await client.aclose()


# --- Errors before the stream ----------------------------------------------------------------

STATUSES = [
    (401, "key_refused", "The gateway refused the API key"),
    (403, "key_refused", "The gateway refused the API key"),
    (404, "not_found", "The gateway does not know this service or model"),
    (400, "invalid", "The gateway rejected the request"),
    (422, "invalid", "The gateway rejected the request"),
    (429, "rate_limited", "The gateway is rate limiting requests"),
    (500, "server", "The gateway failed (HTTP 500)"),
    (502, "server", "The gateway failed (HTTP 502)"),
    (503, "server", "The gateway failed (HTTP 503)"),
    (418, "http", "The gateway answered HTTP 418"),
]

BODIES = {
    "detail string": ({"detail": "Invalid request for google-gemini"}, "Invalid request for google-gemini"),
    "detail list": (
        {
            "detail": [
                {"loc": ["body", "model_name"], "msg": "Field required", "type": "missing"},
                {"loc": ["body", "input", 0, "content"], "msg": "String too long"},
            ]
        },
        "body.model_name: Field required; body.input.0.content: String too long",
    ),
    "error string": ({"error": "Provider overloaded"}, "Provider overloaded"),
    "error object": ({"error": {"message": "Quota exceeded", "code": 42}}, "Quota exceeded"),
    "message": ({"message": "Upstream timed out"}, "Upstream timed out"),
    "plain text": ("  Bad Gateway (nginx)\n", "Bad Gateway (nginx)"),
    "empty": (b"", None),
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
@pytest.mark.parametrize("status, kind, sentence", STATUSES, ids=[str(s[0]) for s in STATUSES])
async def test_it_turns_error_answers_into_errors(run, fake_gateway, status, kind, sentence, body):
    sent, text = body
    fake_gateway.queue(error_reply(status, sent))

    items, error = await run()

    assert items == []
    assert error.kind == kind
    assert error.status == status
    if text is None:
        assert str(error) == sentence + "."
    else:
        assert str(error) == f"{sentence}: {text}"
    assert KEY not in str(error)


async def test_it_reads_retry_after_on_429(run, fake_gateway):
    fake_gateway.queue(error_reply(429, {"detail": "Too many requests"}, {"Retry-After": "30"}))

    items, error = await run()

    assert error.kind == "rate_limited"
    assert error.retry_after == 30.0
    assert str(error) == "The gateway is rate limiting requests; retry after 30 s: Too many requests"


async def test_it_never_shows_the_api_key_that_the_gateway_echoes(run, fake_gateway):
    fake_gateway.queue(error_reply(401, {"detail": f"Unknown key {KEY}"}))

    items, error = await run()

    assert error.kind == "key_refused"
    assert KEY not in str(error)
    assert "Unknown key [API key]" in str(error)

    items, error = await run(sse(chunk("a")), sse({"error": f"key {KEY} was revoked"}))

    assert error.kind == "stream_error"
    assert KEY not in str(error)


# A key as long as a real one: a piece of it that survives a cut would still be a leak.
LONG_KEY = "sk_live_5c0b8e2f7a9d4c1e6b3a8f0d2e"


def leaked(text: str, key: str = LONG_KEY) -> list[str]:
    """Every 10-character piece of the key found in `text`."""
    return [key[i : i + 10] for i in range(len(key) - 9) if key[i : i + 10] in text]


async def test_it_redacts_the_key_from_every_item_it_yields(fake_gateway):
    fake_gateway.queue(
        Reply(
            parts=[
                sse(chunk(f"Your key is {LONG_KEY}.")),
                sse(
                    {"type": "metadata", "name": "metadata", "content": {"sent": LONG_KEY, LONG_KEY: [f"<{LONG_KEY}>"]}}
                ),
                sse(f"not JSON, with {LONG_KEY}"),
                sse(
                    {
                        "final": True,
                        "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
                        "cost": {"total": "0.001"},
                        "warnings": [f"{LONG_KEY} is nearly out of quota", {"message": f"key {LONG_KEY}"}],
                        "request": {"headers": {"X-API-Key": LONG_KEY}},
                    }
                ),
            ]
        )
    )
    try:
        items = [item async for item in stream_generate(base_url=fake_gateway.base_url, api_key=LONG_KEY, body=BODY)]
    finally:
        await get_client().aclose()

    assert leaked(repr(items)) == []
    delta, extra, skipped, last = items
    assert delta.text == "Your key is [API key]."
    assert extra.chunk["content"] == {"sent": "[API key]", "[API key]": ["<[API key]>"]}
    assert skipped.data == "not JSON, with [API key]"
    assert last.warnings == ["[API key] is nearly out of quota", "key [API key]"]
    assert last.raw["request"] == {"headers": {"X-API-Key": "[API key]"}}
    assert last.cost_total == Decimal("0.001")


@pytest.mark.parametrize(
    "reply",
    [
        error_reply(500, "x" * 480 + LONG_KEY + "y" * 86),
        error_reply(400, {"detail": "x" * 480 + LONG_KEY + "y" * 86}),
        error_reply(422, {"detail": [{"loc": ["body"], "msg": "x" * 480 + LONG_KEY}]}),
        error_reply(200, "x" * 480 + LONG_KEY + "y" * 86, {"Content-Type": "text/html"}),  # not an event stream
        Reply(parts=[sse(chunk("a")), sse({"error": "x" * 480 + LONG_KEY + "y" * 86})]),
        Reply(parts=[sse("x" * 480 + LONG_KEY + "y" * 86, event="error")]),
    ],
    ids=["text", "json", "validation", "not-a-stream", "error-chunk", "error-event"],
)
async def test_it_redacts_the_key_before_it_cuts_long_error_text(fake_gateway, reply):
    fake_gateway.queue(reply)
    try:
        with pytest.raises(GatewayError) as failed:
            async for _ in stream_generate(base_url=fake_gateway.base_url, api_key=LONG_KEY, body=BODY):
                pass
    finally:
        await get_client().aclose()
    assert leaked(failed.value.message) == []
    assert "[API key]" in failed.value.message


async def test_a_whole_answer_is_redacted_like_a_stream(fake_gateway):
    fake_gateway.queue(
        generate_reply(
            [
                {"type": "text", "name": "output", "content": f"key {LONG_KEY}"},
                {"type": "text", "name": "thinking", "content": f"hmm {LONG_KEY}"},
                {"type": "metadata", "name": "metadata", "content": LONG_KEY},
                {"type": "image", "name": "output", "content": f"https://cdn.example/x.png?key={LONG_KEY}"},
            ],
            warnings=[f"{LONG_KEY} nearly out of quota"],
        ),
        error_reply(403, {"detail": "x" * 480 + LONG_KEY}),
        Reply(
            headers={"Content-Type": "application/json"}, body=b'{"error": "' + b"x" * 480 + LONG_KEY.encode() + b'"}'
        ),
    )
    try:
        result = await generate(base_url=fake_gateway.base_url, api_key=LONG_KEY, body=BODY)
        with pytest.raises(GatewayError) as refused:
            await generate(base_url=fake_gateway.base_url, api_key=LONG_KEY, body=BODY)
        with pytest.raises(GatewayError) as failed:
            await generate(base_url=fake_gateway.base_url, api_key=LONG_KEY, body=BODY)
    finally:
        await get_client().aclose()
    assert leaked(repr(result)) == [] and result.text == "key [API key]"
    assert result.final.warnings == ["[API key] nearly out of quota"]
    assert leaked(refused.value.message) == [] and leaked(failed.value.message) == []


async def test_it_logs_one_warning_per_failed_request_without_the_key(run, fake_gateway, caplog):
    caplog.set_level(logging.WARNING, logger="conversations.gateway")
    fake_gateway.queue(error_reply(401, {"detail": f"Unknown key {KEY}"}), error_reply(429, b"", {"Retry-After": "7"}))

    await run()
    await run()
    await run(sse(chunk("a")))  # no final chunk
    await run(sse(chunk("a")), final())  # a success logs nothing

    lines = [r.getMessage() for r in caplog.records if r.name == "conversations.gateway"]
    assert {r.levelno for r in caplog.records if r.name == "conversations.gateway"} == {logging.WARNING}
    assert len(lines) == 3
    assert "key_refused (HTTP 401)" in lines[0] and "Unknown key [API key]" in lines[0]
    assert "rate_limited (HTTP 429, retry after 7 s)" in lines[1]
    assert "incomplete (no HTTP status)" in lines[2]
    assert KEY not in caplog.text


def test_error_kinds_are_the_strings_messages_store():
    assert GatewayError("cut", "Cut.").kind is ErrorKind.CUT
    assert error_from_response(403, b"", {}).kind is ErrorKind.KEY_REFUSED == "key_refused"
    assert {ErrorKind.RESTART, ErrorKind.EMPTY} == {"restart", "empty"}  # the app's own kinds
    with pytest.raises(ValueError):
        GatewayError("no such kind", "?")


def test_it_builds_errors_from_responses():
    error = error_from_response(401, b'{"detail": "Invalid API key"}', {"content-type": "application/json"})
    assert (error.kind, error.status, error.retry_after) == ("key_refused", 401, None)
    assert str(error) == error.message == "The gateway refused the API key: Invalid API key"

    error = error_from_response(429, b"slow down", {"Retry-After": "2.5"})
    assert error.retry_after == 2.5
    assert str(error) == "The gateway is rate limiting requests; retry after 3 s: slow down"

    error = error_from_response(502, b"", {})
    assert (error.kind, str(error)) == ("server", "The gateway failed (HTTP 502).")

    error = error_from_response(404, b'{"detail": {"msg": "no such model", "loc": ["model_name"]}}', {})
    assert (error.kind, str(error)) == (
        "not_found",
        "The gateway does not know this service or model: model_name: no such model",
    )


def test_it_reads_retry_after_as_an_http_date():
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)

    error = error_from_response(429, b"", {"retry-after": when})

    assert 110 <= error.retry_after <= 121


@pytest.mark.parametrize("value", ["soon", "", "nan"])
def test_it_ignores_a_retry_after_it_cannot_read(value):
    assert error_from_response(429, b"", {"Retry-After": value}).retry_after is None


def test_it_caps_long_error_text():
    error = error_from_response(500, b"x" * 5000, {})

    assert len(str(error)) < 600


def test_it_survives_error_bodies_that_are_not_utf8():
    error = error_from_response(500, b"\xff\xfe oops", {})

    assert error.kind == "server"
    assert "oops" in str(error)


# --- Helpers and the shared client -----------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (3, Decimal(3)),
        (Decimal("1.5E-7"), Decimal("1.5E-7")),
        ("1.5e-07", Decimal("1.5E-7")),
        (" 0.1 ", Decimal("0.1")),
        (0.1, Decimal("0.1")),
        (None, None),
        ("", None),
        ("abc", None),
        ("NaN", None),
        (True, None),
        ({"total": 1}, None),
    ],
)
def test_it_parses_decimals(value, expected):
    assert parse_decimal(value) == expected


async def test_it_shares_one_client_per_event_loop():
    client = get_client()
    try:
        assert get_client() is client
        assert client.timeout == httpx.Timeout(10.0, read=120.0)
    finally:
        await client.aclose()
    assert get_client() is not client  # a closed client is replaced
    await get_client().aclose()


def test_it_uses_another_client_in_another_event_loop():
    async def shared_client():
        client = get_client()
        await client.aclose()
        return client

    assert asyncio.run(shared_client()) is not asyncio.run(shared_client())


# By host name too: a cookie jar may refuse cookies from an IP address and keep them
# from a name (aiohttp's, under the client, does).
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_it_keeps_no_cookie_from_one_request_for_the_next(fake_gateway, host):
    # One client serves every user: a cookie the gateway sets during alice's request
    # must never go out with bob's.
    alices = stream_reply(["Hi alice"])
    alices.headers["Set-Cookie"] = "session=alice; Path=/"
    fake_gateway.queue(alices, stream_reply(["Hi bob"]))
    base_url = fake_gateway.base_url.replace("127.0.0.1", host)
    try:
        for key in ("sk_alice_key", "sk_bob_key"):
            async for _ in stream_generate(base_url=base_url, api_key=key, body=BODY):
                pass
    finally:
        await get_client().aclose()
    alice, bob = fake_gateway.requests
    assert alice.headers["x-api-key"] == "sk_alice_key"
    assert bob.headers["x-api-key"] == "sk_bob_key" and "cookie" not in bob.headers


def test_default_timeout_allows_long_silences():
    timeout = default_timeout()
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (10.0, 120.0, 10.0, 10.0)
    assert default_timeout(read=5).read == 5


# --- The fake itself ------------------------------------------------------------------------


async def test_the_fake_answers_plain_generate_from_the_same_queue(fake_gateway):
    fake_gateway.queue(error_reply(200, {"output": [{"type": "text", "name": "output", "content": "hi"}]}))
    async with httpx.AsyncClient() as client:
        unknown = await client.post(fake_gateway.base_url + "/nowhere", json={})
        plain = await client.post(fake_gateway.base_url + "/generate", json={"a": 1})
        default = await client.post(fake_gateway.base_url + "/generate/stream", json={})

    assert unknown.status_code == 404
    assert plain.json()["output"][0]["content"] == "hi"
    assert plain.headers["content-length"] == str(len(plain.content))
    assert default.headers["content-type"] == "text/event-stream"
    assert default.headers["transfer-encoding"] == "chunked"
    assert b"Hello" in default.content
    assert [r.path for r in fake_gateway.requests] == [
        "/api/v1/nowhere",
        "/api/v1/generate",
        "/api/v1/generate/stream",
    ]
    assert fake_gateway.requests[1].json == {"a": 1}
