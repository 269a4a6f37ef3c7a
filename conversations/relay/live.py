"""Markdown formatted while it streams: each block once when it closes, the open one at a bounded rate.

Markdown is block-structured: once a later top-level block has started, the blocks
before it can no longer change (a list item after a blank line, a setext underline, a
lazy quote line all belong to the last block). So a generation keeps, per text (answer
and thinking), the rendered blocks that are closed, which every socket appends once,
and the open last block, which is re-rendered at most every LIVE_RENDER_INTERVAL and
replaces the previous render; text arriving in between is appended raw after it. Only
the open block is ever parsed again, so a flush costs what the open block costs, not
the answer: a long answer stays linear.

Rendering is the same pipeline as a finished answer (rendering.py: markdown-it-py with
raw HTML off, then nh3), once per generation, never per socket. An open code fence is
shown as a code block, coloured only once it closes. What a page shows when the answer
ends equals the final render, block for block; the exceptions are reference links and
footnotes defined later in the answer, which the final render completes.
"""

from __future__ import annotations

from dataclasses import dataclass

from conversations import rendering

# An open block longer than this turns live formatting off for the rest of that text
# (it streams as plain text and is formatted at the end): one endless paragraph, or a
# dump with no blank line, must not cost a parse and a render per flush.
OPEN_BLOCK_MAX_CHARS = 8_000


@dataclass(frozen=True, slots=True)
class Piece:
    """What one delta changes in one text's formatted form."""

    closed: str = ""  # HTML of blocks that just closed: appended after the closed ones
    open: str | None = None  # HTML of the open block: replaces it (None: unchanged)
    raw: str = ""  # text that arrived since `open`: appended after it, as text


class LiveMarkdown:
    """One text's formatted form, built as the text arrives."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.closed_html: list[str] = []  # every closed block's HTML, for a catch-up
        self.open_html = ""  # the open block, as last rendered
        self.raw = ""  # arrived since then
        self._open_text = ""  # the open block's text (and anything after it)
        self._rendered_at: float | None = None
        self.plain = False  # gave up formatting this text: plain text until the end

    def feed(self, text: str, now: float) -> Piece:
        """Take newly arrived `text` (may be empty: render what waits); what the page changes."""
        if not text and not self.raw:
            return Piece()  # nothing new: the render shown stands (thinking, once the answer began)
        if self.plain:
            self.raw += text
            return Piece(raw=text)
        # Text after a blank line starts a block, which closes the one before: render at
        # once (one render per block), so a closed block never waits out the interval.
        new_block = text.strip() != "" and ("\n\n" in text.rstrip() or self._open_text.endswith("\n\n"))
        self._open_text += text
        if not (new_block or self.due(now)):
            self.raw += text
            return Piece(raw=text)
        self._rendered_at = now
        starts = rendering.block_starts(self._open_text)
        closed = ""
        if len(starts) > 1:
            # Everything before the last block's first line can no longer change.
            lines = self._open_text.splitlines(keepends=True)
            cut = sum(len(line) for line in lines[: starts[-1]])
            closed = rendering.render_markdown(self._open_text[:cut])
            self.closed_html.append(closed)
            self._open_text = self._open_text[cut:]
        if len(self._open_text) > OPEN_BLOCK_MAX_CHARS:
            # The open block's render so far is replaced by its text, plain, and so on.
            self.plain, self.open_html, self.raw, self._open_text = True, "", self._open_text, ""
            return Piece(closed=closed, open="", raw=self.raw)
        self.open_html = rendering.render_markdown(self._open_text, highlight=False)
        self.raw = ""
        return Piece(closed=closed, open=self.open_html)

    def due(self, now: float) -> bool:
        """The open block may be rendered again."""
        return self._rendered_at is None or now - self._rendered_at >= self.interval

    @property
    def waiting(self) -> bool:
        """Text arrived since the last render: a quiet spell should render it."""
        return bool(self.raw) and not self.plain

    def snapshot(self) -> tuple[list[str], str, str]:
        """(closed blocks' HTML, open HTML, raw text since): what a page shows now."""
        return list(self.closed_html), self.open_html, self.raw
