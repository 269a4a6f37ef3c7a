"""Markdown rendering: tables, lists, highlighted code with light and dark colours."""

from __future__ import annotations

import pytest

from conversations.management.commands import pygments_css
from conversations.rendering import render_markdown


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
