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
