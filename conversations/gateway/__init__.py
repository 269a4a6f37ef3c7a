"""The one adapter between chatsite and the generation gateway's HTTP protocol.

It builds request bodies, opens `POST {base}/generate/stream`, reads the Server-Sent
Events (httpx-sse follows the SSE rules: LF/CRLF/CR, comments, multi-line data) and
turns them into `Delta`, `Extra`, `Skipped` and `Final` items, or a `GatewayError`.
Image models don't stream: `generate()` posts to `{base}/generate` and returns the
whole answer (text, images, usage and cost) as one `Generated`; `fetch_image()` gets an
image the gateway gave as a URL.

Every part of the protocol that the gateway's docs do not state (see UPSTREAM.md,
"ASSUMED": the history format, the parameter names other than enable_thinking, error
bodies, error events, the /generate answer and its image items) lives here, so that it
can be corrected in one place. No Django imports: this module is tested on its own.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any, Union
from urllib.parse import unquote_to_bytes

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

__all__ = [
    "Delta",
    "Extra",
    "Skipped",
    "Final",
    "Item",
    "GatewayError",
    "Image",
    "Generated",
    "build_body",
    "build_parameters",
    "generate",
    "fetch_image",
    "history_turn",
    "get_client",
    "default_timeout",
    "stream_generate",
    "error_from_response",
    "parse_decimal",
]


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


Item = Union[Delta, Extra, Skipped, Final]


class GatewayError(Exception):
    """A failure talking to the gateway; `kind` says which, `message` is for the user.

    kind: "connect", "timeout", "key_refused", "not_found", "invalid", "rate_limited",
    "server", "http", "stream_error", "cut", "incomplete", "too_large" (an answer or
    image over the size limit), "image" (an image that could not be fetched).
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"GatewayError({self.kind!r}, {self.message!r}, status={self.status!r})"


# --- Request bodies --------------------------------------------------------------


def _text_item(name: str, text: str) -> dict:
    return {"type": "text", "name": name, "content": text}


def build_body(
    *,
    service_name: str,
    model_name: str,
    prompt: str,
    history: list[dict] | None = None,
    parameters: dict | None = None,
) -> dict:
    """The JSON body of a generate request (KNOWN), with optional keys only when given."""
    body: dict[str, Any] = {
        "service_name": service_name,
        "model_name": model_name,
        "input": [_text_item("input", prompt)],
    }
    if history:
        body["history"] = history
    if parameters:
        body["parameters"] = parameters
    return body


# ASSUMED: the docs name only `enable_thinking`; these are our names for the others.
PARAMETER_SYSTEM_PROMPT = "system_prompt"
PARAMETER_TEMPERATURE = "temperature"
PARAMETER_MAX_OUTPUT_TOKENS = "max_output_tokens"


def build_parameters(
    *,
    enable_thinking: bool | None = None,
    system_prompt: str = "",
    temperature: float | None = None,
    max_output_tokens: int | None = None,
) -> dict | None:
    """`parameters` with only the keys given (None or "" leaves a key out), or None."""
    parameters: dict[str, Any] = {}
    if enable_thinking is not None:
        parameters["enable_thinking"] = enable_thinking  # KNOWN
    if system_prompt:
        parameters[PARAMETER_SYSTEM_PROMPT] = system_prompt
    if temperature is not None:
        parameters[PARAMETER_TEMPERATURE] = temperature
    if max_output_tokens is not None:
        parameters[PARAMETER_MAX_OUTPUT_TOKENS] = max_output_tokens
    return parameters or None


def history_turn(role: str, text: str) -> dict:
    """One earlier turn for `history`, oldest first (ASSUMED format).

    Only the text is sent back: thinking and metadata are not part of the history.
    """
    if role == "user":
        return {"role": "user", "content": [_text_item("input", text)]}
    if role == "assistant":
        return {"role": "assistant", "content": [_text_item("output", text)]}
    raise ValueError(f"history role must be 'user' or 'assistant', not {role!r}")


# --- The shared client -------------------------------------------------------------

# One client per event loop: a client's pooled connections belong to the loop that
# opened them, so sharing one across loops (tests, async_to_sync) would break.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def default_timeout(read: float = 120.0) -> httpx.Timeout:
    """10 s to connect/write/get a pooled connection; `read` is the longest silence
    allowed between chunks (thinking models can be quiet for a long time)."""
    return httpx.Timeout(10.0, read=read)


def get_client(timeout: httpx.Timeout | None = None) -> httpx.AsyncClient:
    """The running loop's shared client, created on first use.

    `timeout` only applies when the client is created. A closed client is replaced.
    """
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(timeout=timeout or default_timeout(), limits=LIMITS)
        _clients[loop] = client
    return client


# One connection per live stream: httpx's default pool (100 connections) would make the
# 101st concurrent answer wait for a free one, and time out after the pool timeout.
LIMITS = httpx.Limits(max_connections=2000, max_keepalive_connections=200)


# --- Streaming ---------------------------------------------------------------------


async def stream_generate(
    *,
    base_url: str,
    api_key: str,
    body: dict,
    client: httpx.AsyncClient | None = None,
) -> AsyncIterator[Item]:
    """Stream one generation: yield `Delta`/`Extra`/`Skipped` items, then one `Final`.

    Raises `GatewayError` for every failure, after yielding whatever arrived before it.
    Close the iterator if you stop early (`contextlib.aclosing`), so the connection is
    released at once.
    """
    client = client or get_client()
    url = base_url.rstrip("/") + "/generate/stream"
    where = _display_url(base_url)
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
                raise error_from_response(
                    response.status_code, response.content, response.headers
                )
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" not in content_type:
                await response.aread()
                raise _not_a_stream(response.status_code, content_type, response.content)
            async with aclosing(source.aiter_sse()) as events:
                async for event in events:
                    for item in _items(event):
                        if isinstance(item, Final):
                            final = item
                        else:
                            yield item
                    if final is not None:
                        break  # stop reading: leaving the block releases the connection
    except GatewayError as exc:
        raise _redacted(exc, api_key) from None
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        raise _transport_error(exc, where, answered) from exc

    if final is None:
        raise GatewayError("incomplete", "The gateway's answer ended before it was complete.")
    yield final


def _transport_error(exc: Exception, where: str, answered: bool) -> GatewayError:
    """A GatewayError for an httpx failure: timeouts, refused or broken connections."""
    if isinstance(exc, httpx.TimeoutException):
        if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
            return GatewayError("timeout", f"Timed out connecting to the gateway at {where}.")
        return GatewayError("timeout", "The gateway did not answer in time (timed out waiting for data).")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        if answered:
            return GatewayError("cut", "The connection to the gateway broke during the answer.")
        return GatewayError("cut", f"The connection to the gateway at {where} broke before it answered.")
    # Refused, a bad base URL, an unsupported scheme, a proxy failure...
    return GatewayError("connect", f"Could not connect to the gateway at {where}{_reason(exc)}.")


# --- Not streaming: POST {base}/generate (image models) ----------------------------------


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
    """A whole /generate answer (ASSUMED shape: `{"output": [items], "usage", "cost",
    "warnings"}`, items shaped like the stream's chunks)."""

    text: str
    thinking: str
    images: list[Image]
    extras: list[dict]
    final: Final


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
    "too_large" when the answer is over `max_bytes`.
    """
    client = client or get_client()
    url = base_url.rstrip("/") + "/generate"
    where = _display_url(base_url)
    headers = {"X-API-Key": api_key, "Content-Type": "application/json", "Accept": "application/json"}
    answered = False
    try:
        async with client.stream("POST", url, headers=headers, json=body) as response:
            answered = True
            content = await _read_capped(response, max_bytes, "The gateway's answer")
            if not response.is_success:
                raise error_from_response(response.status_code, content, response.headers)
    except GatewayError as exc:
        raise _redacted(exc, api_key) from None
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        raise _transport_error(exc, where, answered) from exc
    try:
        payload = json.loads(content, parse_float=Decimal)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        text = _error_text(content)
        message = "The gateway's answer could not be read (not a JSON object)"
        raise _redacted(GatewayError("http", f"{message}: {text}" if text else f"{message}."), api_key)
    if payload.get("error") or payload.get("type") == "error":
        text = _message_of(payload)
        message = "The gateway reported an error"
        raise _redacted(GatewayError("stream_error", f"{message}: {text}" if text else f"{message}."), api_key)
    return _generated(payload)


def _generated(payload: dict) -> Generated:
    output = payload.get("output")
    if isinstance(output, (str, dict)):
        output = [output]
    if not isinstance(output, list):
        output = []
    text, thinking, images, extras = [], [], [], []
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
    return Generated("".join(text), "".join(thinking), images, extras, _final(payload))


def _image(item: dict) -> Image:
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


async def _read_capped(response: httpx.Response, max_bytes: int | None, what: str) -> bytes:
    """The body, refused with "too_large" as soon as it passes `max_bytes`."""
    declared = response.headers.get("content-length", "")
    if max_bytes is not None and declared.isdigit() and int(declared) > max_bytes:
        raise GatewayError("too_large", f"{what} is {human_size(int(declared))}, over the {human_size(max_bytes)} limit.")
    chunks, total = [], 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise GatewayError("too_large", f"{what} is over the {human_size(max_bytes)} limit.")
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch_image(
    url: str, *, client: httpx.AsyncClient | None = None, max_bytes: int, timeout: float
) -> tuple[bytes, str | None]:
    """GET an image the gateway gave as a URL: (bytes, the Content-Type it was served as).

    Raises GatewayError "too_large" past `max_bytes`, "image" for anything else.
    """
    client = client or get_client()
    where = _display_url(url)
    try:
        async with client.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if not response.is_success:
                raise GatewayError("image", f"Could not fetch the image at {where}: HTTP {response.status_code}.")
            data = await _read_capped(response, max_bytes, "The image")
            return data, response.headers.get("content-type")
    except httpx.TimeoutException:
        raise GatewayError("image", f"Could not fetch the image at {where}: timed out.") from None
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        raise GatewayError("image", f"Could not fetch the image at {where}{_reason(exc)}.") from None


def human_size(n: int) -> str:
    """1536 -> "1.5 KB", 10485760 -> "10 MB" (binary units)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f}".rstrip("0").rstrip(".") + f" {unit}"
        n /= 1024
    return f"{n} GB"


def _items(event: ServerSentEvent) -> list[Item]:
    """Route one SSE event (ASSUMED: the error shapes; KNOWN: the chunk shapes)."""
    if event.event == "error":
        raise _stream_error(event.data)
    if not event.data:
        # The SSE rules dispatch no event without data (e.g. a lone "retry:" field).
        return []
    try:
        # parse_float=Decimal keeps costs exact, exponent form included.
        chunk = json.loads(event.data, parse_float=Decimal)
    except ValueError:
        return [Skipped(event.data)]
    if not isinstance(chunk, dict):
        return [Skipped(event.data)]

    if chunk.get("error") or chunk.get("type") == "error":
        raise _stream_error(chunk)

    if _is_final(chunk):
        # A final chunk that also carries text: keep the text.
        content = _content_item(chunk)
        return [content, _final(chunk)] if isinstance(content, Delta) else [_final(chunk)]
    content = _content_item(chunk)
    return [] if content is None else [content]


def _is_final(chunk: dict) -> bool:
    # "final": true marks only the final chunk in the docs; "is_final" also appears on
    # content chunks, so it needs the usage/cost of a real final chunk.
    if chunk.get("final") is True:
        return True
    return chunk.get("is_final") is True and ("usage" in chunk or "cost" in chunk)


def _content_item(chunk: dict) -> Delta | Extra | None:
    kind = chunk.get("type", "text")
    name = chunk.get("name")
    if kind == "text" and name in ("output", "thinking"):
        text = chunk.get("content")
        if isinstance(text, str):
            return Delta(name, text, _index(chunk)) if text else None
    return Extra(chunk)


def _index(chunk: dict) -> int:
    index = chunk.get("index", 0)
    return index if isinstance(index, int) and not isinstance(index, bool) else 0


def _final(chunk: dict) -> Final:
    usage = chunk.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    cost = chunk.get("cost")
    # Tolerate a bare number as the total cost.
    cost = cost if isinstance(cost, dict) else {"total": cost}
    return Final(
        input_tokens=_parse_int(usage.get("input_tokens")),
        output_tokens=_parse_int(usage.get("output_tokens")),
        total_tokens=_parse_int(usage.get("total_tokens")),
        cost_input=parse_decimal(cost.get("input")),
        cost_output=parse_decimal(cost.get("output")),
        cost_total=parse_decimal(cost.get("total")),
        warnings=_warnings(chunk.get("warnings")),
        raw=chunk,
    )


def _warnings(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]
    texts = []
    for warning in value:
        if isinstance(warning, dict):
            text = warning.get("message") or warning.get("detail")
            texts.append(str(text) if text else _dumps(warning))
        else:
            texts.append(str(warning))
    return texts


def _stream_error(payload: Any) -> GatewayError:
    if isinstance(payload, str):
        # An "event: error" whose data may be JSON or plain text.
        try:
            payload = json.loads(payload, parse_float=Decimal)
        except ValueError:
            pass
    text = _message_of(payload)
    message = "The gateway reported an error during the answer"
    return GatewayError("stream_error", f"{message}: {text}" if text else f"{message}.")


def _not_a_stream(status: int, content_type: str, body: bytes) -> GatewayError:
    text = _error_text(body)
    message = f"The gateway did not answer with an event stream (Content-Type {content_type!r})"
    return GatewayError("http", f"{message}: {text}" if text else f"{message}.", status=status)


# --- Errors before the stream --------------------------------------------------------


def error_from_response(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    """A `GatewayError` for a non-2xx answer (ASSUMED: the error body shapes)."""
    retry_after = _retry_after(headers)
    if status in (401, 403):
        kind, sentence = "key_refused", "The gateway refused the API key"
    elif status == 404:
        kind, sentence = "not_found", "The gateway does not know this service or model"
    elif status in (400, 422):
        kind, sentence = "invalid", "The gateway rejected the request"
    elif status == 429:
        kind, sentence = "rate_limited", "The gateway is rate limiting requests"
        if retry_after is not None:
            sentence += f"; retry after {math.ceil(retry_after)} s"
    elif 500 <= status <= 599:
        kind, sentence = "server", f"The gateway failed (HTTP {status})"
    else:
        kind, sentence = "http", f"The gateway answered HTTP {status}"
    text = _error_text(body)
    message = f"{sentence}: {text}" if text else f"{sentence}."
    return GatewayError(kind, message, status=status, retry_after=retry_after)


_MAX_TEXT = 500


def _error_text(body: bytes) -> str:
    """The gateway's own words from an error body: JSON shapes, else the plain text."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return ""
    try:
        text = _message_of(json.loads(text, parse_float=Decimal))
    except ValueError:
        pass
    return _cap(text)


def _message_of(value: Any) -> str:
    """FastAPI `detail` (string or list of {loc, msg}), `error` (string or object),
    `message`, `msg`, `content`; anything else as JSON."""
    if isinstance(value, str):
        return _cap(value.strip())
    if isinstance(value, list):
        return "; ".join(filter(None, (_message_of(item) for item in value)))
    if isinstance(value, dict):
        if "msg" in value:
            loc = value.get("loc")
            msg = _message_of(value["msg"])
            if isinstance(loc, list) and loc:
                return f"{'.'.join(str(part) for part in loc)}: {msg}"
            return msg
        for key in ("detail", "error", "message", "content"):
            inner = value.get(key)
            if isinstance(inner, (str, list, dict)) and inner:
                return _message_of(inner)
    if value is None:
        return ""
    return _cap(_dumps(value))


def _cap(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT].rstrip() + "…"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


# --- Small helpers -----------------------------------------------------------------


def parse_decimal(value: Any) -> Decimal | None:
    """An exact Decimal from an int, a Decimal or a numeric string; None otherwise."""
    if isinstance(value, bool):  # bool is an int: never a cost
        return None
    if isinstance(value, float):
        value = repr(value)  # the shortest text that round-trips, not the binary value
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal) and value.is_finite():
        return value
    return None


def _parse_int(value: Any) -> int | None:
    number = parse_decimal(value)
    if number is None or number != number.to_integral_value():
        return None
    return int(number)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return f" ({text})" if text else ""


def _display_url(url: str) -> str:
    # Never show credentials that someone put in the URL (http://user:pass@host).
    return re.sub(r"//[^/@]*@", "//", url)


def _redacted(exc: GatewayError, api_key: str) -> GatewayError:
    # The gateway may echo the key in an error body; never pass it on.
    if not api_key or api_key not in exc.message:
        return exc
    return GatewayError(
        exc.kind,
        exc.message.replace(api_key, "[API key]"),
        status=exc.status,
        retry_after=exc.retry_after,
    )
