"""Markdown rendering: tables, lists, highlighted code with light and dark colours."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from conversations.management.commands import pygments_css
from conversations.models import Conversation, Message
from conversations.relay import fragments
from conversations.rendering import render_markdown
from tests.chat import db, no_generation_left, open_socket, send, until_done
from tests.fakegateway import stream_reply


def test_it_renders_tables_lists_and_highlighted_code():
    html = render_markdown(
        "| a | b |\n|:--|--:|\n| 1 | 2 |\n\n- one\n- two\n\n1. first\n2. second\n\n"
        "```python\ndef f(x):\n    return x  # done\n```\n\n```\nplain <b>code</b>\n```\n"
    )
    assert "<table>" in html and "<th style" not in html and "<td" in html
    assert "<ul>\n<li>one</li>" in html and "<ol>\n<li>first</li>" in html
    assert '<pre class="highlight"><code><span class="k">def</span>' in html
    assert '<span class="c1"># done</span>' in html
    assert "plain &lt;b&gt;code&lt;/b&gt;" in html  # unknown language: escaped, not highlighted


def test_the_committed_pygments_css_is_what_the_command_writes():
    """static/pygments.css comes from `manage.py pygments_css`; run it after changing the styles."""
    assert pygments_css.PATH.read_text() == pygments_css.stylesheet()
    css = pygments_css.stylesheet()
    assert ".highlight .k {" in css  # keywords, light
    dark = css[css.index("@media (prefers-color-scheme: dark)") :]
    assert ".highlight .k {" in dark and ".highlight { background: #0d1117" in dark


@pytest.mark.django_db
def test_the_page_links_the_highlighting_colours(client, alice):
    client.force_login(alice)
    assert 'href="/static/pygments.css"' in client.get("/").content.decode()


def table_like(chars: int) -> str:
    """A markdown table of about `chars` characters."""
    row = "| " + " | ".join(f"cell {i}" for i in range(8)) + " |\n"
    head = "| " + " | ".join(f"h{i}" for i in range(8)) + " |\n|" + "---|" * 8 + "\n"
    return head + row * max(1, (chars - len(head)) // len(row))


def test_an_answer_too_long_to_format_is_shown_as_its_plain_text(settings):
    """Formatting takes time in proportion to the text (seconds for a few hundred KB, while
    every other page waits): past RENDER_MAX_CHARS the text is shown as it is, escaped."""
    answer = table_like(600_000) + "<b>bold?</b> & done"
    html = render_markdown(answer)
    assert "Too long to format" in html and "<table" not in html
    assert "| cell 0 | cell 1 |" in html and "&lt;b&gt;bold?&lt;/b&gt; &amp; done</pre>" in html
    assert html.count("<pre") == 1 and "<b>" not in html
    # An answer of ordinary length is formatted as ever.
    assert "<table>" in render_markdown(table_like(2_000)) and "Too long" not in render_markdown(table_like(2_000))
    settings.RENDER_MAX_CHARS = 1_000
    assert "Too long to format" in render_markdown(table_like(2_000))


def test_code_is_coloured_only_in_answers_short_enough_to_colour_quickly():
    """Colouring is the slowest part (about 15 µs a character of dense code): a long
    answer's code stays plain, still a code block."""
    long_code = "```python\n" + "x = [a + b for a in b]\n" * 1_500 + "```\n"
    html = render_markdown(long_code)
    assert '<pre><code class="language-python">x = [a + b for a in b]\n' in html
    assert '<span class="' not in html
    assert '<span class="k">def</span>' in render_markdown("```python\ndef f(): pass\n```\n")


def test_markdown_images_are_links_the_reader_may_follow_never_fetched_images():
    """An answer must not make the browser fetch anything: a markdown image would load as
    the page opens (tracking; a prompt-injected answer could leak the conversation in its
    URL) and a same-origin one would send a GET with the user's cookies."""
    html = render_markdown(
        "![a chart](https://example.com/t.png?secret=1) and ![](/dashboard/costs/ledger.csv?to=9999-12-31)"
        ' and ![js](javascript:alert(1)) and <img src="https://example.com/raw.png">'
    )
    assert "<img" not in html
    assert '<a href="https://example.com/t.png?secret=1" rel="noopener noreferrer nofollow">a chart</a>' in html
    assert (
        '<a href="/dashboard/costs/ledger.csv?to=9999-12-31" rel="noopener noreferrer nofollow">'
        "/dashboard/costs/ledger.csv?to=9999-12-31</a>"
    ) in html
    assert "javascript:" not in html.replace("![js](javascript:alert(1))", "")
    assert "&lt;img" in html  # raw HTML is shown as text


# --- answers too large for one socket message ------------------------------------------------


def escaped_dump(chars: int = 300_000) -> str:
    """Text whose HTML is four times its length: `<&>` becomes `&lt;&amp;&gt;`."""
    return ("<&>" * 5 + "\n") * (chars // 16) + "END-OF-DUMP"


def load_url(fragment: str) -> str:
    """The address a fragment's "load" control fetches over HTTP."""
    match = re.search(r'hx-get="([^"]+)"[^>]*hx-trigger="load', fragment)
    assert match, fragment[:2_000]
    return match.group(1).replace("&amp;", "&")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_key_allowed", "no_retries")
async def test_a_finished_answer_too_large_for_one_socket_message_loads_over_http(
    alice, db_models, gateway_url, fake_gateway, settings
):
    """Daphne refuses to send a message over its limit (it closes the socket with 1011,
    and the page reconnected to the same refusal, again and again): an answer whose HTML
    is larger comes as its start and a control that loads it over HTTP, at once."""
    answer = escaped_dump()
    # Paced, so each piece streams as a delta of its own.
    fake_gateway.queue(stream_reply([answer[i : i + 20_000] for i in range(0, len(answer), 20_000)], delay=0.05))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Dump it", db_models["flash"].pk))
    frames = await until_done(socket)
    await socket.disconnect()
    await no_generation_left()

    assert all(len(frame.encode()) <= settings.WEBSOCKET_MAX_MESSAGE_BYTES for frame in frames)
    done = frames[-1]
    conversation, message = await db(lambda: (Conversation.objects.get(), Message.objects.get(role="assistant")))
    assert f'<article id="msg-{message.pk}" class="message assistant status-complete' in done
    assert "536 tokens" in done  # the rest of the final state comes as ever
    assert "&lt;&amp;&gt;&lt;&amp;&gt;" in done and "END-OF-DUMP" not in done  # its start
    assert ">Load the full answer</button>" in done

    # The control fetches the answer as a reload would show it.
    full = await db(lambda: client_for(alice).get(load_url(done)))
    assert full.status_code == 200
    page = full.content.decode()
    assert page.lstrip().startswith(f'<article id="msg-{message.pk}" class="message assistant status-complete')
    assert "END-OF-DUMP" in page and page.count("&lt;&amp;&gt;") == answer.count("<&>")

    # A page that (re)connects gets the same small final state.
    other = await open_socket(alice, f"/ws/chat/{conversation.pk}/")
    resync = await other.receive_from(timeout=10)
    await other.disconnect()
    assert len(resync.encode()) <= settings.SOCKET_HTML_MAX_BYTES and "Load the full answer" in resync


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_a_redrawn_thread_too_large_for_one_socket_message_loads_over_http(alice, settings):
    """Switching versions (or starting a new one) redraws every message shown: with a
    large answer among them, the messages load over HTTP; an answer that has just started
    stays in the fragment, so its first words have somewhere to go."""
    conversation = Conversation.objects.create(user=alice, title="Dumps")
    question = conversation.messages.create(role="user", content="Dump it")
    conversation.messages.create(role="assistant", content=escaped_dump(), status="complete")
    then = conversation.messages.create(role="user", content="And then?")
    streaming = conversation.messages.create(role="assistant", content="", status="streaming")
    client = client_for(alice)

    redrawn = fragments.thread_for(conversation.pk, streaming.pk)
    assert len(redrawn.encode()) <= settings.SOCKET_HTML_MAX_BYTES
    assert f'id="msg-{streaming.pk}-answer"' in redrawn and f'id="msg-{question.pk}"' not in redrawn
    earlier = client.get(load_url(redrawn)).content.decode()
    assert f'id="msg-{question.pk}"' in earlier and "END-OF-DUMP" in earlier and f'id="msg-{then.pk}"' in earlier
    assert f'id="msg-{streaming.pk}"' not in earlier
    assert earlier.index(f'id="msg-{question.pk}"') < earlier.index(f'id="msg-{then.pk}"')

    Message.objects.filter(pk=streaming.pk).update(status="complete", content="Done.")
    redrawn = fragments.thread_for(conversation.pk)
    assert len(redrawn.encode()) <= settings.SOCKET_HTML_MAX_BYTES
    everything = client.get(load_url(redrawn)).content.decode()
    assert all(f'id="msg-{m.pk}"' in everything for m in (question, then, streaming))
    assert "END-OF-DUMP" in everything and "Done." in everything
    # Bob can't load Alice's messages.
    bob = client_for(User.objects.create_user("bob"))
    assert bob.get(load_url(redrawn)).status_code == 404

    # A thread that fits is sent whole, as ever.
    Message.objects.filter(role="assistant", status="complete").exclude(pk=streaming.pk).update(content="Short.")
    assert 'hx-trigger="load' not in fragments.thread_for(conversation.pk)


def test_daphne_is_started_with_the_limit_fragments_are_sized_by(settings):
    """`python -m chatsite.serve` passes the setting on (Daphne's own default is 1 MiB)."""
    from chatsite import serve

    settings.WEBSOCKET_MAX_MESSAGE_BYTES = 3_000_000
    arguments = serve.daphne_arguments("127.0.0.1", ["-v", "1"])
    assert arguments[arguments.index("--websocket-max-message-size") + 1] == "3000000"
    assert arguments[arguments.index("--websocket-max-frame-size") + 1] == "3000000"
    assert arguments[-3:] == ["-v", "1", "chatsite.asgi:application"]
    assert settings.SOCKET_HTML_MAX_BYTES < settings.WEBSOCKET_MAX_MESSAGE_BYTES
