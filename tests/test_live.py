"""Live rendering: answers formatted as they stream, each closed block once, the open one re-rendered."""

from __future__ import annotations

import re
import threading

import pytest

from conversations import rendering
from conversations.relay.live import LiveMarkdown, Piece
from tests.chat import frames_until, no_generation_left, open_socket, send, until_done
from tests.fakegateway import Reply, Wait, chunk, final, sse, stream_reply

ANSWER = """# Plan

Some **bold** text and `code`
over two lines.

- one
- two

  still two

| a | b |
|---|---|
| 1 | 2 |

> quoted
lazy line

```python
print("hi")
```

Setext heading
--------------

The end.
"""


def stream(text: str, size: int, interval: float = 0.0) -> tuple[LiveMarkdown, list]:
    live = LiveMarkdown(interval)
    pieces = [live.feed(text[i : i + size], now=float(i)) for i in range(0, len(text), size)]
    return live, pieces


@pytest.mark.parametrize("size", [1, 3, 7, 40, len(ANSWER)])
def test_closed_blocks_and_the_open_one_add_up_to_the_final_render(size):
    live, pieces = stream(ANSWER, size)
    closed, open_html, raw = live.snapshot()
    assert raw == ""
    assert "".join(closed) + open_html == rendering.render_markdown(ANSWER)
    # What the deltas carried adds up to the same: closed blocks once each, the open one replaced.
    assert [p.closed for p in pieces if p.closed] == closed
    assert [p.open for p in pieces if p.open is not None][-1] == open_html


def test_a_closed_block_is_never_sent_again():
    _, pieces = stream(ANSWER, 5)
    closed = [p.closed for p in pieces if p.closed]
    assert sum(c.count("<h1>Plan</h1>") for c in closed) == 1
    assert sum(c.count("<table>") for c in closed) == 1


def test_an_open_fence_is_a_plain_code_block_until_it_closes():
    live = LiveMarkdown(0)
    piece = live.feed("```python\nprint('hi')\n", 0.0)
    assert piece.open is not None and "<pre><code" in piece.open and "<span" not in piece.open
    live.feed("```\n\nAfter.\n", 1.0)
    closed, _, _ = live.snapshot()
    assert '<pre class="highlight">' in "".join(closed)  # coloured once closed


def test_between_renders_text_is_appended_raw_then_formatted():
    live = LiveMarkdown(interval=1.0)
    assert live.feed("Hello **wor", 0.0).open == "<p>Hello **wor</p>\n"
    piece = live.feed("ld**", 0.5)
    assert (piece.open, piece.raw) == (None, "ld**")
    assert live.waiting and not live.due(0.9) and live.due(1.0)
    assert live.feed("", 1.0).open == "<p>Hello <strong>world</strong></p>\n"
    assert not live.waiting


def test_each_render_parses_only_the_open_block(monkeypatch):
    """A long answer stays linear: what is parsed per flush is bounded by the open block."""
    parsed = []
    original = rendering.block_starts
    monkeypatch.setattr(rendering, "block_starts", lambda text: parsed.append(len(text)) or original(text))
    paragraph = "A sentence of a long answer, one of many. " * 5 + "\n\n"
    live, _ = stream(paragraph * 400, 50)  # 86 KB
    assert len(parsed) > 1000
    assert max(parsed) < 3 * len(paragraph)


def test_an_endless_open_block_turns_to_plain_text_until_the_end():
    live = LiveMarkdown(0)
    assert live.feed("word " * 1000, 0.0).open  # 5,000 characters: rendered
    piece = live.feed("word " * 1000, 1.0)  # past the bound: its render gives way to its text
    assert piece.open == "" and piece.raw == "word " * 2000
    piece = live.feed("\n\n# More", 2.0)  # and what follows stays plain
    assert (piece.open, piece.raw) == (None, "\n\n# More")
    assert not live.waiting


# --- through the socket ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_key_allowed")
async def test_the_socket_carries_formatted_blocks_before_the_answer_ends(
    alice, db_models, gateway_url, fake_gateway, settings
):
    settings.LIVE_RENDERING = True
    settings.LIVE_RENDER_INTERVAL = 0
    release = threading.Event()
    fake_gateway.queue(
        Reply(
            parts=[
                sse(chunk("Some **bold** text.\n\n")),
                sse(chunk("| a | b |\n|---|---|\n| 1 | 2 |\n\n")),
                sse(chunk("Last")),
                Wait(release),
                final(),
            ]
        )
    )
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Format", db_models["flash"].pk))
    before_end = await frames_until(socket, r"<td>1</td>")
    # A second socket joins mid-answer: its catch-up is formatted too.
    conversation_id = int(re.search(r'data-url="/c/(\d+)/"', "".join(before_end)).group(1))
    second = await open_socket(alice, f"/ws/chat/{conversation_id}/")
    catch_up = "".join(await frames_until(second, r"<td>1</td>"))
    release.set()
    after = await until_done(socket)
    await socket.disconnect()
    await second.disconnect()
    await no_generation_left()

    streamed = "".join(before_end)
    assert "<strong>bold</strong>" in streamed and "**bold**" not in streamed
    appended = "".join(re.findall(r'beforeend:#msg-\d+-answer-done">(.*?)</div>', streamed, re.S))
    assert appended.count("<strong>bold</strong>") == 1  # a closed block, appended once
    assert "<strong>bold</strong>" in catch_up and "<table>" in catch_up
    assert "<table>" in "".join(after[-1:])  # and the final render has it too


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_key_allowed")
async def test_answers_stream_as_plain_text_with_live_rendering_off(
    alice, db_models, gateway_url, fake_gateway, settings
):
    settings.LIVE_RENDERING = False
    fake_gateway.queue(stream_reply(["Some **bold** text."]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Plain", db_models["flash"].pk))
    frames = await until_done(socket)
    await socket.disconnect()
    deltas = [f for f in frames if "-answer-tail" in f]
    assert deltas and "**bold**" in "".join(deltas) and "<strong>" not in "".join(deltas)


def test_a_block_closes_at_once_when_the_next_one_starts():
    live = LiveMarkdown(interval=10.0)
    live.feed("First paragraph.\n\n", 0.0)
    piece = live.feed("Second", 0.1)  # well inside the interval
    assert piece.closed == "<p>First paragraph.</p>\n"
    assert live.feed(" paragraph", 0.2).open is None  # within a block, the interval holds


def test_nothing_new_renders_nothing(monkeypatch):
    live = LiveMarkdown(0)
    live.feed("Thinking done.", 0.0)
    renders = []
    monkeypatch.setattr(rendering, "block_starts", lambda text: renders.append(text) or [0])
    assert live.feed("", 1.0) == Piece()
    assert renders == []
