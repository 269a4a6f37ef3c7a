"""Whole answers: `POST {base}/generate`, for models that don't stream (image models).

KNOWN (docs/UPSTREAM.md): image models use this endpoint with the same body. ASSUMED: the
answer's shape, and its image items as base64, a data: URI or an http(s) URL.
(Not named generate.py: the package re-exports `generate()`, which would hide the module.)
"""

from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal
from urllib.parse import unquote_to_bytes

import httpx

from conversations.gateway.chunks import final_of
from conversations.gateway.client import get_client, read_capped
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
    transport_error,
)
from conversations.gateway.types import Generated, Image


async def generate(
    *,
    base_url: str,
    api_key: str,
    body: dict,
    client: httpx.AsyncClient | None = None,
    max_bytes: int | None = None,
) -> Generated:
    """One generation without streaming (image models): `POST {base}/generate`.

    Raises `GatewayError` like `stream_generate` does (same kinds and messages), and
    "too_large" when the answer is over `max_bytes`. Like the stream, the answer has
    `api_key` replaced by "[API key]" wherever the gateway echoes it.
    """
    client = client or get_client()
    url = base_url.rstrip("/") + "/generate"
    where = display_url(base_url)
    headers = {"X-API-Key": api_key, "Content-Type": "application/json", "Accept": "application/json"}
    answered = False
    try:
        async with client.stream("POST", url, headers=headers, json=body) as response:
            answered = True
            content = await read_capped(response, max_bytes, "The gateway's answer")
            if not response.is_success:
                raise error_from_response(response.status_code, content, response.headers, api_key)
        payload = _payload(content, api_key)
    except GatewayError as exc:
        raise log_failure(redacted(exc, api_key), where) from None
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        raise log_failure(transport_error(exc, where, answered), where) from exc
    return _generated(payload)


def _payload(content: bytes, api_key: str) -> dict:
    """The answer's JSON object without `api_key`, or a GatewayError: not JSON, or an
    error (ASSUMED: shaped like the stream's error chunks)."""
    try:
        payload = scrub(json.loads(content, parse_float=Decimal), api_key)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        text = error_text(content, api_key)
        message = "The gateway's answer could not be read (not a JSON object)"
        raise GatewayError(ErrorKind.HTTP, f"{message}: {text}" if text else f"{message}.")
    if payload.get("error") or payload.get("type") == "error":
        text = message_of(payload)
        message = "The gateway reported an error"
        raise GatewayError(ErrorKind.STREAM_ERROR, f"{message}: {text}" if text else f"{message}.")
    return payload


def _generated(payload: dict) -> Generated:
    output = payload.get("output")
    if isinstance(output, (str, dict)):
        output = [output]
    if not isinstance(output, list):
        output = []
    text: list[str] = []
    thinking: list[str] = []
    images: list[Image] = []
    extras: list[dict] = []
    for item in output:
        if isinstance(item, str):  # tolerate a bare string as answer text
            text.append(item)
            continue
        if not isinstance(item, dict):
            continue
        kind, name, content = item.get("type", "text"), item.get("name", "output"), item.get("content")
        if kind == "image":
            images.append(_image(item))
        elif kind == "text" and name in ("output", "thinking") and isinstance(content, str):
            (thinking if name == "thinking" else text).append(content)
        else:
            extras.append(item)
    return Generated("".join(text), "".join(thinking), images, extras, final_of(payload))


def _image(item: dict) -> Image:
    """An image item (ASSUMED): base64 with no prefix, a data: URI or an http(s) URL."""
    content = item.get("content")
    mime_type = item.get("mime_type") or item.get("mimeType")
    mime_type = mime_type if isinstance(mime_type, str) else None
    if isinstance(content, dict):  # tolerate {"url": ...} or {"data": ...}
        content = content.get("url") or content.get("data")
    if not isinstance(content, str) or not content.strip():
        return Image(error="The gateway sent an image item with no content.")
    content = content.strip()
    if content.startswith("data:"):
        header, comma, data = content[5:].partition(",")
        if not comma:
            return Image(source="data-uri", error="The gateway sent an image as a data: URI that could not be read.")
        declared = header.split(";")[0] or mime_type
        try:
            raw = _b64decode(data) if ";base64" in header else unquote_to_bytes(data)
        except ValueError:
            return Image(source="data-uri", error="The gateway sent an image whose base64 could not be read.")
        return Image(data=raw, mime_type=declared, source="data-uri")
    if content.startswith(("http://", "https://")):
        return Image(url=content, mime_type=mime_type, source="url")
    try:
        return Image(data=_b64decode(content), mime_type=mime_type)
    except ValueError:
        return Image(error="The gateway sent an image whose base64 could not be read.")


def _b64decode(text: str) -> bytes:
    text = "".join(text.split())
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None
