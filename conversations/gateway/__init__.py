"""The one adapter between chatsite and the generation gateway's HTTP protocol.

The protocol it follows is docs/UPSTREAM.md (from the gateway's streaming page, kept as
docs/gateway-streaming-page.txt). Every part that the gateway's docs do not state (marked
ASSUMED there: the history format, the parameter names other than enable_thinking, error
statuses and bodies, error events, the /generate answer and its image items) lives in this
package, so that it can be corrected in one place. No Django imports: it is tested on its own.

- types.py: what callers get: `Delta`, `Extra`, `Skipped`, `Final` (`Item`), `Image`, `Generated`.
- errors.py: `ErrorKind`, `GatewayError`, `error_from_response`, the error texts, the API
  key's redaction, Retry-After, and the WARNING line logged per failed request.
- client.py: the shared `httpx.AsyncClient` per event loop, request bodies and parameters.
- chunks.py: what a chunk means (text, extras, the final chunk's usage and exact costs).
- stream.py: `stream_generate()`, `POST {base}/generate/stream` read as Server-Sent Events.
- whole.py: `generate()`, `POST {base}/generate` for image models, and its image items.
- demo.py: the built-in demo gateway (Django views; not part of the adapter).

Callers use the names below: `from conversations import gateway; gateway.stream_generate(...)`.
Fetching an image the gateway gave as a URL is `conversations.images.fetch`.
"""

from __future__ import annotations

from conversations.gateway.chunks import parse_decimal
from conversations.gateway.client import (
    build_body,
    build_parameters,
    default_timeout,
    get_client,
    history_turn,
)
from conversations.gateway.errors import ErrorKind, GatewayError, error_from_response
from conversations.gateway.stream import stream_generate
from conversations.gateway.types import Delta, Extra, Final, Generated, Image, Item, Skipped
from conversations.gateway.whole import generate

__all__ = [
    "Delta",
    "ErrorKind",
    "Extra",
    "Final",
    "GatewayError",
    "Generated",
    "Image",
    "Item",
    "Skipped",
    "build_body",
    "build_parameters",
    "default_timeout",
    "error_from_response",
    "generate",
    "get_client",
    "history_turn",
    "parse_decimal",
    "stream_generate",
]
