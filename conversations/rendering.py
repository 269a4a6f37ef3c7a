"""Turns an answer's markdown into safe HTML, once, when the answer ends.

Answers are untrusted: markdown-it-py parses with raw HTML off, Pygments colours code,
and nh3 keeps only an allowlist (no `hx-*`, no event handlers, no `javascript:` URLs),
so nothing the gateway sends can run script or drive htmx.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

_formatter = HtmlFormatter(nowrap=True)


def _highlight(code: str, lang: str, attrs: str) -> str:
    try:
        lexer = get_lexer_by_name(lang.strip()) if lang.strip() else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it then escapes the code itself
    return f'<pre class="highlight"><code>{highlight(code, lexer, _formatter)}</code></pre>'


_markdown = MarkdownIt("commonmark", {"html": False, "highlight": _highlight}).enable(["table", "strikethrough"])

_cleaner = nh3.Cleaner(
    tags=nh3.ALLOWED_TAGS - {"map", "area"},
    attributes={
        "a": {"href", "title"},
        "img": {"src", "alt", "title"},
        "code": {"class"},
        "pre": {"class"},
        "span": {"class"},
        "div": {"class"},
        "ol": {"start"},
        "th": {"align"},
        "td": {"align"},
    },
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
)


@lru_cache(maxsize=512)
def render_markdown(text: str) -> str:
    """Sanitised HTML for an answer (cached: a page shows the same answers again and again)."""
    return _cleaner.clean(_markdown.render(text))
