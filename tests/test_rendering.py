"""Markdown rendering: tables, lists, highlighted code with light and dark colours."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from linkify_it import LinkifyIt  # type: ignore[import-untyped]

from conversations import rendering
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


# --- math and richer markdown ------------------------------------------------------------

X_SQUARED = "<msup><mi>x</mi><mn>2</mn></msup>"


def math_count(html: str) -> int:
    return html.count("<math ")


@pytest.mark.parametrize(
    ("text", "display"),
    [
        ("Inline $x^2$ in dollars.", "inline"),
        ("Inline \\(x^2\\) in parentheses.", "inline"),
        ("$$x^2$$", "block"),
        ("$$\nx^2\n$$", "block"),
        ("Set apart in a sentence: $$x^2$$ and on.", "block"),
        ("\\[x^2\\]", "block"),
        ("\\[\nx^2\n\\]", "block"),
        ("Set apart in a sentence: \\[x^2\\] and on.", "block"),
        ("- in a list: $x^2$\n- and \\(x^2\\)", "inline"),
        ("> quoted:\n>\n> $$\n> x^2\n> $$", "block"),
    ],
)
def test_latex_in_each_of_the_four_delimiters_renders_as_mathml(text, display):
    """Models write all four; Chromium draws MathML itself: no script, the CSP as it was."""
    html = render_markdown(text)
    assert f'<math xmlns="http://www.w3.org/1998/Math/MathML" display="{display}">' in html, html
    assert X_SQUARED in html and "x^2" not in html


def test_a_formula_with_fractions_roots_and_a_matrix_renders_whole():
    html = render_markdown(
        "$$\n\\frac{a}{\\sqrt{b}} + \\sum_{i=1}^{n} i^2 \\le \\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}\n$$"
    )
    for element in ("<mfrac>", "<msqrt>", "<munderover>", "<mtable", "<mtr>", "<mtd"):
        assert element in html, element
    assert "<mo>≤</mo>" in html  # written by latex2mathml as a character reference


def test_prices_in_dollars_stay_text():
    """`$` before a digit, or a digit after the closing `$`, is money, not math."""
    for text in (
        "It costs $5 and $10.",
        "From $5-$10 a month.",
        "Between $1,000 and $2,000.",
        "$5 now, $6 later",
        "US$ 20 and US$ 30",
    ):
        html = render_markdown(text)
        assert math_count(html) == 0, text
        assert text in html
    html = render_markdown("Pay $5 for $n$ items.")
    assert math_count(html) == 1 and "Pay $5 for <span" in html
    assert math_count(render_markdown("An escaped \\$x\\$ is text.")) == 0


@pytest.mark.parametrize("latex", ["\\frac{", "\\begin{pmatrix} 1 & 2", "\\sqrt[", "{" * 5_000 + "x" + "}" * 5_000])
def test_latex_that_does_not_parse_shows_its_source_as_code(latex):
    html = render_markdown(f"Before $${latex}$$ after.")
    assert math_count(html) == 0
    assert f'<code class="math-error">{latex}</code>' in html.replace("&amp;", "&")
    assert html.startswith("<p>Before ") and "after.</p>" in html


MATH_PAYLOADS = [
    "$\\href{javascript:alert(1)}{click}$",
    '\\(\\href{" onmouseover="alert(1)}{x}\\)',
    "$$\\style{background:url(javascript:alert(1))}{x}$$",
    "$\\class{visually-hidden}{x}$",
    "$\\text{<img src=x onerror=alert(1)>}$",
    "$\\text{<script>alert(1)</script>}$",
    "$\\text{</math><img src=x onerror=alert(1)>}$",
    "$\\text{<a href=javascript:alert(1)>a</a>}$",
    "$\\mathrm{<maction actiontype=statusline>x</maction>}$",
]


@pytest.mark.parametrize("payload", MATH_PAYLOADS)
def test_latex_cannot_carry_a_payload(payload):
    """latex2mathml turns \\href, \\style and \\class into attributes and writes \\text's
    content as it came: none of it survives into the page."""
    html = render_markdown(payload)
    assert "<math" in html, html
    inert(html)
    assert "<img" not in html and "<script" not in html and "<a " not in html and "<maction" not in html


def test_raw_mathml_in_an_answer_is_text():
    html = render_markdown(
        '<math><maction actiontype="statusline" href="javascript:alert(1)" onclick="alert(1)">'
        "<mi>x</mi></maction></math>"
    )
    assert "<math" not in html and "&lt;math&gt;" in html


def test_the_sanitiser_keeps_mathml_but_no_links_handlers_or_actions_in_it():
    """The allowlist is the last guard: were MathML with a payload ever to reach it, only
    the math would be left."""
    html = rendering._cleaner.clean(
        '<math display="block" xmlns="http://www.w3.org/1998/Math/MathML" href="javascript:alert(1)" onclick="alert(1)">'
        '<mrow href="javascript:alert(2)" onmouseover="alert(3)" style="color:red" class="x" id="y">'
        '<maction actiontype="statusline" href="javascript:alert(4)"><mi>x</mi><mtext>tip</mtext></maction>'
        '<mi xlink:href="javascript:alert(5)" mathvariant="normal">y</mi>'
        '<semantics><mi>z</mi><annotation-xml encoding="text/html"><a href="https://x.test">h</a></annotation-xml></semantics>'
        "</mrow></math>"
    )
    inert(html)
    assert "<maction" not in html and "annotation-xml" not in html and "https://x.test" not in html
    assert '<math display="block" xmlns="http://www.w3.org/1998/Math/MathML"><mrow><mi>x</mi>' in html
    assert '<mi mathvariant="normal">y</mi>' in html


def inert(html: str) -> None:
    """No link, handler, style, class or id in any tag (a payload may show as text)."""
    tags = " ".join(re.findall(r"<[^>]*>", html))
    assert "javascript" not in tags and "href" not in tags, html
    assert not re.search(r"\son\w+\s*=", tags), html
    assert "style=" not in tags and "id=" not in tags and "class=" not in tags.replace('class="math', ""), html


def test_math_renders_the_same_in_a_block_alone_as_in_the_whole_answer():
    """While streaming, each closed block is rendered alone: math must not depend on the rest."""
    blocks = [
        "Intro with $a_1$ and \\(b^2\\).",
        "$$\n\\frac{1}{2}\n$$",
        "\\[\n\\sqrt{x}\n\\]",
        "- item $\\alpha$\n- item $$\\beta$$",
        "A price of $5 and $x$.",
    ]
    whole = render_markdown("\n\n".join(blocks))
    assert whole == "".join(render_markdown(block) for block in blocks)
    assert math_count(whole) == 7


def test_task_lists_are_disabled_checkboxes():
    html = render_markdown("- [ ] write it\n- [x] test it\n- [not a task]")
    assert (
        '<li class="task-list-item"><input class="task-list-item-checkbox" type="checkbox" disabled="disabled"> write it'
        in html
    )
    assert (
        '<input class="task-list-item-checkbox" checked="checked" type="checkbox" disabled="disabled"> test it' in html
    )
    assert html.count("<input") == 2 and "[not a task]" in html


def test_the_sanitiser_lets_inputs_through_only_disabled():
    """Nothing to type in, focus, click or send with a form; a checkbox at most."""
    html = rendering._cleaner.clean(
        '<input type="text" name="q" value="x" form="composer" autofocus onfocus="alert(1)">'
        '<input type="submit"><input type="checkbox" checked>'
    )
    assert html == (
        '<input disabled="disabled"><input disabled="disabled"><input type="checkbox" checked="" disabled="disabled">'
    )


def test_urls_become_links_but_file_names_do_not():
    html = render_markdown(
        "See https://example.com/a?b=1, www.example.org and docs.python.org. "
        "Edit README.md, main.py and lib.rs; mail ops@example.com. `https://in.code` stays."
    )
    rel = 'rel="noopener noreferrer nofollow"'
    assert f'<a href="https://example.com/a?b=1" {rel}>https://example.com/a?b=1</a>' in html
    assert f'<a href="http://www.example.org" {rel}>www.example.org</a>' in html
    assert f'<a href="http://docs.python.org" {rel}>docs.python.org</a>' in html
    assert f'<a href="mailto:ops@example.com" {rel}>ops@example.com</a>' in html
    assert "Edit README.md, main.py and lib.rs;" in html
    assert "<code>https://in.code</code>" in html
    assert "javascript:" not in render_markdown("javascript:alert(1) and <javascript:alert(1)>").replace(
        "javascript:alert(1) and &lt;javascript:alert(1)&gt;", ""
    )


@pytest.mark.parametrize(
    "text",
    [
        "plain words [1796233101.064832] and numbers 3.14",
        "write to Ops@Example.co.uk",  # each of these shows one mark only
        "see WWW.EXAMPLE.DE today",
        "see https://example.de/x?y=1",
        "docs.python.org, pypi.org/project/x; lib.rs and main.py stay",
        "a.com.b example.info? tools.biz! x.pro, y.int site.dev/path",
    ],
)
def test_the_quick_link_pretest_finds_every_link_the_full_one_does(text):
    quick = rendering._markdown(highlight=False)
    full = rendering._markdown(highlight=False)
    full.linkify.pretest = lambda text: bool(LinkifyIt.pretest(full.linkify, text))
    assert quick.render(text) == full.render(text)


def test_strikethrough():
    assert render_markdown("~~gone~~ kept") == "<p><s>gone</s> kept</p>\n"


def test_footnotes_render_at_the_end_of_the_answer_and_link_both_ways():
    text = "A claim[^1] and another[^src].\n\n[^1]: First source.\n\n[^src]: Second source.\n\nThe end."
    html = render_markdown(text)
    assert html.index("The end.") < html.index('<section class="footnotes">')
    ids = re.findall(r'id="([^"]+)"', html)
    assert len(ids) == 4 and len(set(ids)) == 4
    for target in re.findall(r'href="#([^"]+)"', html):
        assert target in ids
    assert 'First source. <a href="#fnref-' in html and "Second source." in html
    assert '<sup class="footnote-ref"><a href="#fn-' in html
    # Two answers on one page don't share ids.
    other = render_markdown(text.replace("claim", "statement"))
    assert not set(re.findall(r'id="([^"]+)"', other)) & set(ids)
    # Ids are the renderer's own: markdown has no way to write one.
    assert "<a id" not in render_markdown('Text {#top} and <a id="top">x</a>')


def test_a_formula_too_long_to_typeset_quickly_shows_its_source():
    """latex2mathml takes time more than in proportion to a formula's length (a second
    for 40,000 characters): past MATH_MAX_CHARS a formula is shown as written."""
    long = "x^2+" * (rendering.MATH_MAX_CHARS // 4) + "y"
    html = render_markdown(f"$${long}$$")
    assert math_count(html) == 0 and f'<code class="math-error">{long}</code>' in html
    assert math_count(render_markdown(f"$${long[-rendering.MATH_MAX_CHARS :]}$$")) == 1


def test_task_lists_in_nested_and_long_lists():
    html = render_markdown("1. [x] outer\n   - [ ] inner\n   - plain\n2. [ ] second\n\n" + "- [ ] t\n" * 3_000)
    assert html.startswith('<ol class="contains-task-list">\n<li class="task-list-item"><input')
    assert '<ul class="contains-task-list">\n<li class="task-list-item"><input' in html
    assert "<li>plain</li>" in html
    assert html.count('type="checkbox"') == 3_003
    assert "[x]" not in html and "[ ]" not in html
    # Only at the start of an item's first paragraph, and only [ ], [x] or [X] then a space.
    html = render_markdown("- text [ ] later\n- [y] no\n- [x]no\n- > [ ] quoted\n\n[ ] not a list")
    assert "<input" not in html
