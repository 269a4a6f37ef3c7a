"""What the adapter yields while streaming, and returns for a whole /generate answer."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Delta:
    """An increment of text to append to the item at `index`."""

    name: str  # "output" (the answer) or "thinking"
    text: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class Extra:
    """A chunk that is kept but not shown: "metadata", an image chunk, an unknown type."""

    chunk: dict


@dataclass(frozen=True, slots=True)
class Skipped:
    """A data line that was not a JSON object; the stream goes on."""

    data: str


@dataclass(frozen=True, slots=True)
class Final:
    """The last chunk: usage, exact costs and warnings (rate-limit notices, not errors)."""

    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cost_input: Decimal | None
    cost_output: Decimal | None
    cost_total: Decimal | None
    warnings: list[str]
    raw: dict


Item = Delta | Extra | Skipped | Final


@dataclass(frozen=True, slots=True)
class Image:
    """An image item of a /generate answer: its bytes (it came as base64 or a data: URI),
    or a URL to fetch, or why it can't be used. `mime_type` is what the gateway said;
    the bytes decide."""

    data: bytes | None = None
    url: str | None = None
    mime_type: str | None = None
    source: str = "base64"  # "base64", "data-uri" or "url"
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Generated:
    """A whole /generate answer (ASSUMED shape, docs/UPSTREAM.md: `{"output": [items],
    "usage", "cost", "warnings"}`, items shaped like the stream's chunks)."""

    text: str
    thinking: str
    images: list[Image]
    extras: list[dict]
    final: Final
