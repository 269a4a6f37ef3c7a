"""Turns an answer's markdown into safe HTML, once, when the answer ends.

Answers are untrusted: markdown-it-py parses with raw HTML off, Pygments colours code,
and nh3 keeps only an allowlist (no `hx-*`, no event handlers, no `javascript:` URLs,
no images), so nothing the gateway sends can run script, drive htmx or make the browser
fetch anything: a markdown image is a link the reader may follow.

The time it takes is bounded: an answer longer than RENDER_MAX_CHARS is shown as its
plain text, and code is coloured only in answers up to HIGHLIGHT_MAX_CHARS.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from django.conf import settings
from django.utils.html import escape
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

# Colouring is the slowest part (about 15 µs a character of dense code, against 4 for
# the rest of markdown): in a longer answer, code blocks stay plain.
HIGHLIGHT_MAX_CHARS = 20_000
# Answers up to this long are cached: a page shows the same answers again and again;
# longer ones would make the cache hold megabytes.
CACHE_MAX_CHARS = 20_000

_formatter = HtmlFormatter(nowrap=True)


def _highlight(code: str, lang: str, attrs: str) -> str:
    try:
        lexer = get_lexer_by_name(lang.strip()) if lang.strip() else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it then escapes the code itself
    return f'<pre class="highlight"><code>{highlight(code, lexer, _formatter)}</code></pre>'


def _image_as_link(renderer: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    """`![alt](url)` as a link to the image, never an <img> that loads as the page opens."""
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    text = renderer.renderInlineAsText(token.children or [], options, env) or src
    return f'<a href="{escape(src)}">{escape(text)}</a>'


def _markdown(highlight: bool) -> MarkdownIt:
    options = {"html": False, "highlight": _highlight if highlight else None}
    md = MarkdownIt("commonmark", options).enable(["table", "strikethrough"])
    md.add_render_rule("image", _image_as_link)
    return md


_coloured = _markdown(highlight=True)
_plain_code = _markdown(highlight=False)

_cleaner = nh3.Cleaner(
    tags=nh3.ALLOWED_TAGS - {"map", "area", "img"},
    attributes={
        "a": {"href", "title"},
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


def render_markdown(text: str, *, highlight: bool = True) -> str:
    """Sanitised HTML for an answer (or its thinking). `highlight=False` leaves code plain
    and skips the cache: the open block of a streaming answer, re-rendered as it grows."""
    if len(text) > settings.RENDER_MAX_CHARS:
        return _as_plain_text(text)
    if not highlight:
        return _cleaner.clean(_plain_code.render(text))
    if len(text) <= CACHE_MAX_CHARS:
        return _render_cached(text)
    return _render(text)


@lru_cache(maxsize=512)
def _render_cached(text: str) -> str:
    return _render(text)


def _render(text: str) -> str:
    md = _coloured if len(text) <= HIGHLIGHT_MAX_CHARS else _plain_code
    return _cleaner.clean(md.render(text))


def _as_plain_text(text: str) -> str:
    note = f"Too long to format ({len(text):,} characters): shown as plain text."
    return f'<p class="status-note">{note}</p><pre class="plain-text">{escape(text)}</pre>'


def block_starts(text: str) -> list[int]:
    """The first line of each top-level block of `text`, as the renderer parses it (a
    streaming answer's blocks before the last one can no longer change)."""
    return [t.map[0] for t in _plain_code.parse(text) if t.level == 0 and t.nesting >= 0 and t.map]
