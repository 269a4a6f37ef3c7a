"""Streaming: `POST {base}/generate/stream`, read as Server-Sent Events (KNOWN, docs/UPSTREAM.md).

httpx-sse follows the SSE rules (LF/CRLF/CR line ends, comments, multi-line data), which
the gateway's own example client does not.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from decimal import Decimal
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

from conversations.gateway.chunks import content_item, final_of, is_final
from conversations.gateway.client import get_client
from conversations.gateway.errors import (
    ErrorKind,
    GatewayError,
    display_url,
    error_from_response,
    error_text,
    log_failure,
    message_of,
    redacted,
    scrub,
    scrub_parsed,
    transport_error,
)
from conversations.gateway.types import Delta, Final, Item, Skipped


async def stream_generate(
    *,
    base_url: str,
    api_key: str,
    body: dict,
    client: httpx.AsyncClient | None = None,
) -> AsyncIterator[Item]:
    """Stream one generation: yield `Delta`/`Extra`/`Skipped` items, then one `Final`,
    with `api_key` replaced by "[API key]" wherever the gateway echoes it.

    Raises `GatewayError` for every failure, after yielding whatever arrived before it.
    Close the iterator if you stop early (`contextlib.aclosing`), so the connection is
    released at once.
    """
    client = client or get_client()
    url = base_url.rstrip("/") + "/generate/stream"
    where = display_url(base_url)
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    answered = False  # the response headers arrived
    final: Final | None = None
    try:
        async with aconnect_sse(client, "POST", url, headers=headers, json=body) as source:
            response = source.response
            answered = True
            # A non-2xx body is JSON or text, not SSE: read it whole.
            if not response.is_success:
                await response.aread()
                raise error_from_response(response.status_code, response.content, response.headers, api_key)
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" not in content_type:
                await response.aread()
                raise _not_a_stream(response.status_code, content_type, response.content, api_key)
            async with aclosing(source.aiter_sse()) as events:
                async for event in events:
                    for item in _items(event, api_key):
                        if isinstance(item, Final):
                            final = item
                        else:
                            yield item
                    if final is not None:
                        break  # stop reading: leaving the block releases the connection
        if final is None:
            # ASSUMED (docs/UPSTREAM.md): a stream that closes without a final chunk is incomplete.
            raise GatewayError(ErrorKind.INCOMPLETE, "The gateway's answer ended before it was complete.")
    except GatewayError as exc:
        raise log_failure(redacted(exc, api_key), where) from None
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        raise log_failure(transport_error(exc, where, answered), where) from exc
    yield final


def _items(event: ServerSentEvent, api_key: str) -> list[Item]:
    """Route one SSE event (ASSUMED: the error shapes; KNOWN: the chunk shapes)."""
    if event.event == "error":
        raise _stream_error(event.data, api_key)
    if not event.data:
        # The SSE rules dispatch no event without data (e.g. a lone "retry:" field).
        return []
    try:
        # parse_float=Decimal keeps costs exact, exponent form included.
        chunk = json.loads(event.data, parse_float=Decimal)
    except ValueError:
        return [Skipped(scrub(event.data, api_key))]
    if not isinstance(chunk, dict):
        return [Skipped(scrub(event.data, api_key))]
    chunk = scrub_parsed(chunk, event.data, api_key)

    # ASSUMED (docs/UPSTREAM.md "Errors during the stream"): an `error` key or "type": "error".
    if chunk.get("error") or chunk.get("type") == "error":
        raise _stream_error(chunk, api_key)

    if is_final(chunk):
        # A final chunk that also carries text: keep the text.
        content = content_item(chunk)
        return [content, final_of(chunk)] if isinstance(content, Delta) else [final_of(chunk)]
    content = content_item(chunk)
    return [] if content is None else [content]


def _stream_error(payload: Any, api_key: str) -> GatewayError:
    if isinstance(payload, str):
        # An "event: error" whose data may be JSON or plain text.
        try:
            payload = json.loads(payload, parse_float=Decimal)
        except ValueError:
            pass
    text = message_of(scrub(payload, api_key))
    message = "The gateway reported an error during the answer"
    return GatewayError(ErrorKind.STREAM_ERROR, f"{message}: {text}" if text else f"{message}.")


def _not_a_stream(status: int, content_type: str, body: bytes, api_key: str) -> GatewayError:
    text = error_text(body, api_key)
    message = f"The gateway did not answer with an event stream (Content-Type {content_type!r})"
    return GatewayError(ErrorKind.HTTP, f"{message}: {text}" if text else f"{message}.", status=status)
