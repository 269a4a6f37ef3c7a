"""Turns an answer's markdown into safe HTML, once, when the answer ends.

Answers are untrusted: markdown-it-py parses with raw HTML off, Pygments colours code,
and nh3 keeps only an allowlist (no `hx-*`, no event handlers, no `javascript:` URLs,
no images), so nothing the gateway sends can run script, drive htmx or make the browser
fetch anything: a markdown image is a link the reader may follow.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from django.utils.html import escape
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
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


def _image_as_link(renderer: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    """`![alt](url)` as a link to the image, never an <img> that loads as the page opens."""
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    text = renderer.renderInlineAsText(token.children or [], options, env) or src
    return f'<a href="{escape(src)}">{escape(text)}</a>'


_markdown = MarkdownIt("commonmark", {"html": False, "highlight": _highlight}).enable(["table", "strikethrough"])
_markdown.add_render_rule("image", _image_as_link)

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


@lru_cache(maxsize=512)
def render_markdown(text: str) -> str:
    """Sanitised HTML for an answer (cached: a page shows the same answers again and again)."""
    return _cleaner.clean(_markdown.render(text))
