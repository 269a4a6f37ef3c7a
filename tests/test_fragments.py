"""The socket's fragments: what a delta swaps, and that its targets are on the page."""

import html
import re

import pytest
from django.template.loader import render_to_string

from conversations.models import Message
from conversations.relay import events, fragments


def targets(html: str) -> set[str]:
    return set(re.findall(r'hx-swap-oob="beforeend:#([\w-]+)"', html)) | set(
        re.findall(r'id="([\w-]+)"[^>]*hx-swap-oob="true"', html)
    )


@pytest.mark.parametrize(
    "answer, thinking",
    [("Hello <b>world</b> & \"friends\" 'x'", ""), ("", "Thinking about <script>"), ("a\\n b", "c\\td"), ("ünï ✓", "")],
)
def test_plain_text_is_escaped_and_appended_to_the_tails(answer, thinking):
    html = fragments.delta(events.delta(42, 3, answer, thinking))
    assert "<script>" not in html and "<b>" not in html
    for name, text in (("answer", answer), ("thinking", thinking)):
        if text:
            assert f'<div hx-swap-oob="beforeend:#msg-42-{name}-tail">' in html
            assert html.count(f"-{name}-tail") == 1


def test_formatted_pieces_append_closed_blocks_and_replace_the_open_one():
    event = events.delta(42, 3, "raw", "")
    event["answer_html"] = {"closed": "<h1>Title</h1>", "open": "<p>Para</p>", "raw": ""}
    event["thinking_html"] = {"closed": "", "open": None, "raw": "hmm <"}
    html = fragments.delta(event)
    assert '<div hx-swap-oob="beforeend:#msg-42-answer-done"><h1>Title</h1></div>' in html
    assert '<div id="msg-42-answer-open" class="live-open" hx-swap-oob="true"><p>Para</p></div>' in html
    assert '<span id="msg-42-answer-tail" class="live-tail" hx-swap-oob="true"></span>' in html  # cleared
    assert '<div hx-swap-oob="beforeend:#msg-42-thinking-tail">hmm &lt;</div>' in html
    assert "raw" not in html  # the formatted form stands for the text


def formatted_catch_up(closed: list[str]) -> events.CatchUp:
    event = events.catch_up(42, 7, "", "")
    event["answer_html"] = events.FormattedSoFar(closed=closed, open="<p>open</p>", raw="tail <")
    event["thinking_html"] = events.FormattedSoFar(closed=[], open="", raw="")
    return event


def test_a_catch_up_shows_the_closed_blocks_before_the_open_one_in_one_frame():
    frames = fragments.catch_up(formatted_catch_up(["<h1>Title</h1>", "<p>One</p>"]))
    assert len(frames) == 1  # a page never shows the open block without what comes before it
    assert re.search(
        r'-answer-done" class="live-done"><h1>Title</h1><p>One</p></div>\s*<div id="msg-42-answer-open"', frames[0]
    )
    assert "<p>open</p>" in frames[0] and "tail &lt;" in frames[0]


def test_closed_blocks_that_do_not_fit_the_first_frame_follow_in_order(settings):
    settings.SOCKET_HTML_MAX_BYTES = 4_000  # a quarter of it per frame of closed blocks
    blocks = [f"<p>{i:03} {'x' * 200}</p>" for i in range(30)]
    frames = fragments.catch_up(formatted_catch_up(blocks))
    assert len(frames) > 2 and all(len(frame) <= 4_000 for frame in frames)
    assert all(frame.startswith('<div hx-swap-oob="beforeend:#msg-42-answer-done">') for frame in frames[1:])
    assert re.findall(r"<p>(\d+) ", "".join(frames)) == [f"{i:03}" for i in range(30)]  # each once, in order


def test_a_long_plain_tail_in_a_catch_up_comes_in_frames_that_fit(settings):
    # A text that gave up formatting (one endless paragraph) streams on as a plain tail.
    settings.SOCKET_HTML_MAX_BYTES = 6_000
    event = formatted_catch_up(["<p>before</p>"])
    event["answer_html"]["raw"] = "".join(f"{i:05} <" for i in range(3_000))
    frames = fragments.catch_up(event)
    assert all(len(frame.encode()) <= 6_000 for frame in frames)
    first_tail = re.search(r'id="msg-42-answer-tail"[^>]*>(.*?)</span>', frames[0], re.S).group(1)
    appended = re.findall(r'beforeend:#msg-42-answer-tail">(.*?)</div>', "".join(frames[1:]), re.S)
    assert html.unescape(first_tail + "".join(appended)) == event["answer_html"]["raw"]  # whole, in order


@pytest.mark.django_db  # the answer shows its model's label, from the catalogue
def test_every_target_of_a_delta_is_on_the_page_of_a_streaming_answer():
    answer = Message(pk=42, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING, model_name="m")
    page = render_to_string("conversations/chat.html#message", {"m": answer})
    event = events.delta(42, 3, "text", "more")
    event["answer_html"] = {"closed": "<p>a</p>", "open": "<p>b</p>", "raw": "c"}
    event["thinking_html"] = {"closed": "<p>a</p>", "open": "<p>b</p>", "raw": "c"}
    ids = set(re.findall(r'id="([\w-]+)"', page))
    assert targets(fragments.delta(event)) <= ids


def test_a_delta_with_the_thinking_time_goes_through_the_partial():
    event = {"type": "chat.delta", "message": 42, "seq": 3, "answer": "x", "thinking": "", "thinking_seconds": 2.5}
    html = fragments.delta(event)
    assert 'id="msg-42-thinking-summary"' in html and "Thinking · 2.5 s" in html
