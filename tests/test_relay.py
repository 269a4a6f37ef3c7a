"""The relay's pure logic, without a socket: coalescing, how an answer ended, which deltas a socket shows."""

from __future__ import annotations

import html
import re
from decimal import Decimal

import pytest

from conversations import gateway
from conversations.keys.vault import UndecryptableKey
from conversations.models import ApiKey, Message
from conversations.relay import events
from conversations.relay.catchup import DeltaFilter, Gap
from conversations.relay.generation import Texts, outcome

FINAL = gateway.Final(
    input_tokens=1,
    output_tokens=2,
    total_tokens=3,
    cost_input=Decimal("1e-7"),
    cost_output=Decimal("2e-7"),
    cost_total=Decimal("3e-7"),
    warnings=[],
    raw={},
)


def texts(answer: str = "", thinking: str = "") -> Texts:
    t = Texts()
    if thinking:
        t.add("thinking", thinking)
    if answer:
        t.add("output", answer)
    return t


# --- Texts: what arrives between two flushes leaves as one numbered delta ----------------


def test_it_coalesces_what_arrives_between_flushes_into_one_delta():
    t = Texts()
    assert t.take() is None  # nothing arrived: nothing to send
    for piece in ("Hel", "lo", " world"):
        t.add("output", piece)
    t.add("thinking", "hmm")
    assert t.take() == (1, "Hello world", "hmm")
    assert t.take() is None
    t.add("output", "!")
    assert t.take() == (2, "!", "")


def test_it_numbers_deltas_and_snapshots_only_what_was_sent():
    t = Texts()
    t.add("output", "one ")
    t.take()
    t.add("output", "two")  # arrived, not sent yet
    assert t.sent() == (1, "one ", "")  # a catch-up holds what deltas 1..seq carried
    assert t.whole() == ("one two", "")  # the database gets everything
    t.take()
    assert t.sent() == (2, "one two", "")


def test_it_tells_answer_text_from_thinking():
    assert not Texts().has_any
    only_thinking = texts(thinking="…")
    assert only_thinking.has_any and not only_thinking.has_answer
    assert texts(answer="x").has_answer


# --- outcome(): every way an answer ends ------------------------------------------------


def ending(**kwargs):
    args = {
        "final": None,
        "stopped": False,
        "error": None,
        "streaming": True,
        "texts": Texts(),
        "got_images": False,
        "image_errors": [],
    }
    args.update(kwargs)
    return outcome(**args)


def test_it_completes_with_a_final_chunk():
    assert ending(final=FINAL, texts=texts("done")) == (Message.Status.COMPLETE, "", "")


def test_it_stops_on_stop():
    assert ending(stopped=True, texts=texts("part")) == (Message.Status.STOPPED, "", "")


@pytest.mark.parametrize("kind", ["cut", "incomplete", "timeout", "stream_error"])
def test_it_keeps_part_of_an_answer_cut_short_as_interrupted(kind):
    error = gateway.GatewayError(kind, "It broke.")
    assert ending(error=error, texts=texts("part")) == (Message.Status.INTERRUPTED, "It broke.", kind)
    # Thinking alone is part of an answer too.
    assert ending(error=error, texts=texts(thinking="hmm")).status == Message.Status.INTERRUPTED
    # Nothing arrived: failed.
    assert ending(error=error) == (Message.Status.FAILED, "It broke.", kind)


@pytest.mark.parametrize("kind", ["connect", "key_refused", "not_found", "invalid", "rate_limited", "server", "http"])
def test_it_fails_on_errors_before_the_answer(kind):
    error = gateway.GatewayError(kind, "No.")
    assert ending(error=error, texts=texts("even with text")) == (Message.Status.FAILED, "No.", kind)


def test_it_fails_without_a_final_chunk_or_an_error():
    status, error, kind = ending(texts=texts("part"))
    assert (status, kind) == (Message.Status.INTERRUPTED, "incomplete")
    assert "before it was complete" in error


@pytest.mark.parametrize("error", [ApiKey.DoesNotExist(), UndecryptableKey()])
def test_it_asks_for_the_key_again_when_it_cannot_be_read(error):
    status, text, kind = ending(error=error)
    assert (status, kind) == (Message.Status.FAILED, "key_refused")
    assert "API keys page" in text


def test_it_fails_on_an_unexpected_error_without_showing_it():
    status, text, kind = ending(error=RuntimeError("secret internals"))
    assert (status, kind) == (Message.Status.FAILED, "")
    assert "secret internals" not in text


def test_an_image_answer_with_nothing_in_it_fails():
    assert ending(final=FINAL, streaming=False).status == Message.Status.FAILED
    assert ending(final=FINAL, streaming=False, got_images=True).status == Message.Status.COMPLETE
    assert ending(final=FINAL, streaming=False, texts=texts("words")).status == Message.Status.COMPLETE


def test_refused_images_are_said_and_keep_what_came():
    refused = ["That was an SVG, not kept."]
    assert ending(final=FINAL, streaming=False, image_errors=refused) == (
        Message.Status.FAILED,
        refused[0],
        "image",
    )
    assert ending(final=FINAL, streaming=False, got_images=True, image_errors=refused).status == (
        Message.Status.COMPLETE
    )


# --- DeltaFilter: each delta shown once, in order, after the catch-up -------------------


def d(seq: int, text: str, answer_id: int = 7) -> events.Delta:
    return events.delta(answer_id, seq, text, "")


def shown(f: DeltaFilter, *deltas: events.Delta) -> list[int]:
    return [delta["seq"] for delta in deltas if f.delta(delta) is not None]


def test_a_socket_that_saw_the_turn_start_shows_every_delta_once():
    f = DeltaFilter()
    f.started(7)
    assert shown(f, d(1, "a"), d(2, "b"), d(2, "b"), d(1, "a"), d(3, "c")) == [1, 2, 3]


def test_it_holds_deltas_until_the_catch_up_and_drops_what_it_covers():
    f = DeltaFilter()
    f.await_catch_up(7)
    assert f.awaiting(7)
    assert shown(f, d(3, "c"), d(2, "b"), d(4, "d")) == []  # held
    later = f.caught_up(events.catch_up(7, 2, "ab", ""))
    assert [delta["seq"] for delta in later] == [3, 4]  # in order, 2 was in the catch-up
    assert not f.awaiting(7)
    assert shown(f, d(4, "d"), d(5, "e")) == [5]


def test_a_jump_in_the_numbers_is_a_gap_held_until_a_catch_up_heals_it():
    f = DeltaFilter()
    f.started(7)
    assert shown(f, d(1, "a")) == [1]
    assert f.delta(d(3, "c")) == Gap(7)  # 2 was lost
    assert f.awaiting(7) and shown(f, d(4, "d")) == []  # held, like any awaiting a catch-up
    later = f.caught_up(events.catch_up(7, 3, "abc", ""))
    assert [delta["seq"] for delta in later] == [4]
    assert shown(f, d(5, "e")) == [5]


def test_a_gap_after_a_catch_up_asks_again():
    f = DeltaFilter()
    f.await_catch_up(7)
    f.delta(d(3, "c"))
    f.delta(d(5, "e"))  # 4 is missing after the catch-up's 3
    later = f.caught_up(events.catch_up(7, 2, "ab", ""))
    assert [delta["seq"] for delta in later] == [3]
    assert f.awaiting(7)  # 5 is held: the socket asks for another catch-up


def test_an_answer_the_socket_never_saw_start_shows_from_any_number():
    f = DeltaFilter()
    assert shown(f, d(4, "d"), d(5, "e")) == [4, 5]


def test_a_catch_up_not_asked_for_or_given_up_on_shows_nothing():
    f = DeltaFilter()
    assert f.caught_up(events.catch_up(7, 2, "ab", "")) is None
    f.await_catch_up(7)
    assert f.give_up(7)
    assert not f.give_up(7)
    assert f.caught_up(events.catch_up(7, 2, "ab", "")) is None


def test_answers_are_filtered_apart_and_forgotten_when_done():
    f = DeltaFilter()
    f.started(7)
    f.started(8)
    assert shown(f, d(1, "a", 7), d(1, "x", 8), d(1, "a", 7)) == [1, 1]
    f.forget(7)
    assert shown(f, d(1, "a", 7)) == [1]  # a new socket state: nothing remembered


# --- no frame larger than a socket message may be ---------------------------------------


def test_a_delta_carries_at_most_max_delta_characters_and_the_rest_follows():
    t = Texts(max_delta=4)
    t.add("thinking", "abcdef")
    t.add("output", "XYZ")
    assert t.take() == (1, "", "abcd")  # thinking first, as it came first
    assert t.take() == (2, "XY", "ef")
    assert t.take() == (3, "Z", "")
    assert t.take() is None
    assert t.sent() == (3, "XYZ", "abcdef")


def test_a_long_catch_up_comes_in_frames_that_fit(settings):
    from conversations.relay import fragments

    settings.SOCKET_HTML_MAX_BYTES = 600  # 100 characters a frame
    answer, thinking = '"' * 250, "t" * 120
    frames = fragments.catch_up(events.catch_up(7, 3, answer, thinking))
    assert len(frames) == 4  # 370 characters, 100 a frame (the tag text is "live-tail" etc.)
    assert all(len(f.encode()) <= 600 + 200 for f in frames)  # the text, escaped, and its markup
    text = "".join(re.sub(r"<[^>]+>", "", f) for f in frames)
    assert html.unescape(text).count('"') == 250 and text.count("t") >= 120
