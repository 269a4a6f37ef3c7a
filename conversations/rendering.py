"""Turns an answer's markdown into safe HTML, once, when the answer ends.

Answers are untrusted: markdown-it-py parses with raw HTML off, Pygments colours code,
and nh3 keeps only an allowlist (no `hx-*`, no event handlers, no `javascript:` URLs,
no images), so nothing the gateway sends can run script, drive htmx or make the browser
fetch anything: a markdown image is a link the reader may follow.

LaTeX in `$…$`, `$$…$$`, `\\(…\\)` and `\\[…\\]` becomes MathML here, on the server
(latex2mathml), which the browser draws itself: no script, the CSP as it was. The MathML
goes through the same allowlist: its elements and presentation attributes, no `href`,
`style`, `class` or `id` (which \\href, \\style, \\class would set), no `maction`.
GitHub's extensions are on too: tables, strikethrough, task lists (disabled checkboxes),
autolinked URLs and footnotes (gathered at the end, ids unique to the answer).

The time it takes is bounded: an answer longer than RENDER_MAX_CHARS is shown as its
plain text, and code is coloured only in answers up to HIGHLIGHT_MAX_CHARS. Rendering is
a pure function of the text: a streaming answer's blocks, each rendered alone, show their
math as the whole answer will.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from xml.etree.ElementTree import tostring

import nh3
from django.conf import settings
from django.utils.html import escape
from latex2mathml.converter import convert_to_element
from linkify_it import LinkifyIt  # type: ignore[import-untyped]  # no types shipped
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core import StateCore
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.footnote import footnote_plugin
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
# Typesetting a formula costs about as much as colouring code, and more than in proportion
# to its length (a second for 40,000 characters): a longer formula is shown as its source.
MATH_MAX_CHARS = 4_000
# Formulas up to this long are cached: a streaming answer's open block is rendered again
# and again, and answers repeat their symbols.
MATH_CACHE_MAX_CHARS = 1_000

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


# --- math ---------------------------------------------------------------------------------

# latex2mathml writes characters as references (`&#x0002B;`) in the text of its tree; the
# serialiser escapes their `&`, and this puts them back. (latex2mathml's own `convert`
# unescapes everything instead, so `\text{<b>}` would come out as markup.)
_ESCAPED_REFERENCE = re.compile(r"&amp;(#x[0-9a-fA-F]+|#[0-9]+);")


def _mathml(latex: str, display: bool) -> str:
    """MathML for `latex`, or its source as code when it doesn't parse or is too long."""
    if len(latex) > MATH_MAX_CHARS:
        return _math_source(latex)
    if len(latex) <= MATH_CACHE_MAX_CHARS:
        return _mathml_cached(latex, display)
    return _typeset(latex, display)


@lru_cache(maxsize=1024)
def _mathml_cached(latex: str, display: bool) -> str:
    return _typeset(latex, display)


def _typeset(latex: str, display: bool) -> str:
    try:
        math = convert_to_element(latex, display="block" if display else "inline")
        return _ESCAPED_REFERENCE.sub(r"&\1;", tostring(math, encoding="unicode"))
    except Exception:  # latex2mathml raises many kinds (and RecursionError) on bad input
        return _math_source(latex)


def _math_source(latex: str) -> str:
    return f'<code class="math-error">{escape(latex)}</code>'


def _render_math(
    tag: str, css_class: str, display: bool
) -> Callable[[RendererHTML, list[Token], int, OptionsDict, EnvType], str]:
    def render(renderer: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        return f'<{tag} class="{css_class}">{_mathml(tokens[idx].content.strip(), display)}</{tag}>'

    return render


def _delimited_math(opening: str, closing: str, token_type: str) -> Callable[[StateInline, bool], bool]:
    r"""An inline rule for `\(…\)` or `\[…\]` (within one paragraph, as markdown-it-texmath).

    The last closing delimiter of the paragraph is looked up once, so a paragraph full of
    openings that never close costs one pass, not one per opening."""

    def rule(state: StateInline, silent: bool) -> bool:
        if not state.src.startswith(opening, state.pos):
            return False
        last = state.env.get(closing)
        if last is None or last[0] is not state.src:
            last = state.env[closing] = (state.src, state.src.rfind(closing))
        start = state.pos + len(opening)
        if last[1] < start:
            return False
        end = state.src.index(closing, start)
        if not state.src[start:end].strip():
            return False
        if not silent:
            token = state.push(token_type, "math", 0)
            token.content = state.src[start:end]
            token.markup = opening
        state.pos = end + len(closing)
        return True

    return rule


def _math_plugin(md: MarkdownIt) -> None:
    # Not between a digit and `$` nor inside spaces: "$5 and $10" is money. No labels
    # (`$$x$$ (1)` would set an id); no blank line within `$$…$$`, as in LaTeX.
    dollarmath_plugin(
        md, allow_space=False, allow_digits=False, allow_labels=False, allow_blank_lines=False, double_inline=True
    )
    md.inline.ruler.before("escape", "math_parentheses", _delimited_math("\\(", "\\)", "math_inline"))
    md.inline.ruler.before("escape", "math_brackets", _delimited_math("\\[", "\\]", "math_inline_double"))
    md.add_render_rule("math_inline", _render_math("span", "math", display=False))
    # Display math within a paragraph: a <span> (a <div> would end the paragraph); CSS sets it apart.
    md.add_render_rule("math_inline_double", _render_math("span", "math display", display=True))
    md.add_render_rule("math_block", _render_math("div", "math display", display=True))


# --- task lists --------------------------------------------------------------------------------

_TASK = re.compile(r"\[([ xX])\][ \t\n]")


def _task_lists(state: StateCore) -> None:
    """GitHub's task lists: an item starting `[ ]` or `[x]` shows a checkbox. (mdit-py-plugins'
    rule walks back to each item's list: quadratic, 47 s for 12,000 items.)"""
    lists: list[Token] = []  # the lists the walk is in, innermost last
    tokens = state.tokens
    for i, token in enumerate(tokens):
        if token.type in ("bullet_list_open", "ordered_list_open"):
            lists.append(token)
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif token.children and (first := _task_text(tokens, i)):
            checked = ' checked="checked"' if first.content[1] in "xX" else ""
            checkbox = Token("html_inline", "", 0)
            checkbox.content = f'<input class="task-list-item-checkbox"{checked} disabled="disabled" type="checkbox">'
            first.content = first.content[3:]
            token.children.insert(0, checkbox)
            tokens[i - 2].attrSet("class", "task-list-item")
            lists[-1].attrSet("class", "contains-task-list")


def _task_text(tokens: list[Token], i: int) -> Token | None:
    """The text a list item's first paragraph starts with, if it starts as a task's."""
    if i < 2 or tokens[i - 1].type != "paragraph_open" or tokens[i - 2].type != "list_item_open":
        return None
    children = tokens[i].children
    first = children[0] if children else None
    if first is None or first.type != "text" or not _TASK.match(first.content + "\n"):
        return None
    return first


# --- links and footnotes -----------------------------------------------------------------------

# A bare `name.tld` is a link only for generic top-level domains: README.md, main.py and
# lib.rs stay file names (.md, .py, .rs are countries' domains). `www.`, e-mail addresses
# and URLs with a scheme are always links.
_BARE_LINK_TLDS = frozenset({"com", "org", "net", "edu", "gov", "int", "info", "biz", "pro", "io", "dev"})
_BARE_LINK_MARKS = tuple(f".{tld}" for tld in _BARE_LINK_TLDS)  # what _Linkify.pretest looks for


class _Linkify(LinkifyIt):
    def pretest(self, text: str) -> bool:
        # Every link _wanted keeps shows one of these marks, and most text shows none:
        # the library's own pretest is one large regex, which took 15% of the relay's
        # CPU as answers ended (profiled under bench/relay.py).
        lowered = text.lower()
        hinted = "://" in text or "@" in text or "mailto:" in lowered or "www." in lowered
        if not hinted and not any(mark in lowered for mark in _BARE_LINK_MARKS):
            return False
        return bool(super().pretest(text))

    def match(self, text: str) -> list[Any] | None:
        return [link for link in super().match(text) or [] if _wanted(link)] or None


def _wanted(link: Any) -> bool:
    if link.schema:
        return bool(link.schema != "//")  # protocol-relative: rare, and not what anyone typed
    host = link.raw.split("/", 1)[0].split(":", 1)[0].lower()
    return host.startswith("www.") or host.rsplit(".", 1)[-1] in _BARE_LINK_TLDS


def _footnote_ids(state: StateCore) -> None:
    """Footnote ids unique to the answer, so two answers on a page link each to its own
    notes: footnote_plugin puts env["docId"] in them. A digest of the text keeps
    rendering a pure function of it (and the cache valid)."""
    state.env.setdefault("docId", hashlib.blake2s(state.src.encode(), digest_size=4).hexdigest())


def _markdown(highlight: bool) -> MarkdownIt:
    options = {"html": False, "highlight": _highlight if highlight else None, "linkify": True}
    md = MarkdownIt("commonmark", options).enable(["table", "strikethrough", "linkify"])
    md.linkify = _Linkify()
    md.add_render_rule("image", _image_as_link)
    md.use(_math_plugin).use(footnote_plugin)
    md.core.ruler.after("inline", "task_lists", _task_lists)
    md.core.ruler.before("normalize", "footnote_ids", _footnote_ids)
    return md


_coloured = _markdown(highlight=True)
_plain_code = _markdown(highlight=False)

# MathML as latex2mathml writes it, with presentation attributes only: no `href`, `style`,
# `class` or `id` (\\href, \\style, \\class set them on an mrow), no `maction` (unwrapped:
# both its alternatives show), no `semantics` or annotations, no `voffset` (\\raisebox
# would move a formula over the page around it).
_MATH_STYLE = {"mathvariant", "mathcolor", "mathbackground", "mathsize", "displaystyle", "scriptlevel"}
_MATH_ATTRIBUTES: dict[str, set[str]] = {
    "math": {"display", "xmlns"},
    **{
        tag: set()
        for tag in (
            "mrow",
            "mi",
            "mn",
            "mtext",
            "ms",
            "msup",
            "msub",
            "msubsup",
            "msqrt",
            "mroot",
            "mphantom",
            "mstyle",
        )
    },
    "mo": {
        "fence",
        "form",
        "largeop",
        "movablelimits",
        "stretchy",
        "separator",
        "lspace",
        "rspace",
        "minsize",
        "maxsize",
        "symmetric",
        "accent",
    },
    "mfrac": {"linethickness"},
    "mover": {"accent"},
    "munder": {"accentunder"},
    "munderover": {"accent", "accentunder"},
    "mspace": {"width", "height", "depth", "linebreak"},
    "mpadded": {"width", "height", "depth", "lspace"},
    "menclose": {"notation"},
    "mtable": {"columnspacing", "rowspacing", "columnalign", "rowalign", "columnlines", "rowlines", "frame"},
    "mtr": {"columnalign", "rowalign"},
    "mtd": {"columnalign", "rowalign", "columnspan", "rowspan"},
}

_cleaner = nh3.Cleaner(
    tags=(nh3.ALLOWED_TAGS - {"map", "area", "img"}) | {"section", "input"} | set(_MATH_ATTRIBUTES),
    # What is dropped with its content: an annotation is the formula again, as source.
    clean_content_tags={"script", "style", "annotation", "annotation-xml"},
    attributes={
        "a": {"href", "title", "id", "class"},  # ids and classes: footnotes' links and backlinks
        "code": {"class"},
        "pre": {"class"},
        "span": {"class"},
        "div": {"class"},
        "ol": {"start", "class"},
        "ul": {"class"},
        "li": {"id", "class"},
        "sup": {"class"},
        "section": {"class"},
        "hr": {"class"},
        "input": {"class", "checked"},
        "th": {"align"},
        "td": {"align"},
        **{tag: attributes | _MATH_STYLE for tag, attributes in _MATH_ATTRIBUTES.items()},
    },
    # A task list's checkbox shows a state; it can't be typed in, focused or sent.
    tag_attribute_values={"input": {"type": {"checkbox"}}},
    set_tag_attribute_values={"input": {"disabled": "disabled"}},  # one: several come in any order
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
    tokens: list[Token] = []
    _plain_code.block.parse(text, _plain_code, {}, tokens)  # blocks only: no inline parsing needed
    return [t.map[0] for t in tokens if t.level == 0 and t.nesting >= 0 and t.map]
