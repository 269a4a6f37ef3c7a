"""What can go wrong, in words for the user: `ErrorKind`, `GatewayError`, and turning
the gateway's error answers (ASSUMED shapes, docs/UPSTREAM.md "Errors before the stream starts")
and httpx's failures into them, with the API key never in a message or a log line
(`scrub` takes it out of everything the gateway says, errors or not).
"""

from __future__ import annotations

import enum
import json
import logging
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

log = logging.getLogger("conversations.gateway")


class ErrorKind(enum.StrEnum):
    """Why an answer failed. Message.error_kind stores the value (a member equals its
    string), so the page can offer the right way out: a link to the API keys, a retry."""

    # Raised by the adapter.
    CONNECT = "connect"  # refused, a bad base URL, a proxy failure
    TIMEOUT = "timeout"  # connecting, or waiting for the next chunk
    KEY_REFUSED = "key_refused"  # HTTP 401/403 (ASSUMED)
    NOT_FOUND = "not_found"  # HTTP 404: unknown service or model (ASSUMED)
    INVALID = "invalid"  # HTTP 400/422 (ASSUMED)
    RATE_LIMITED = "rate_limited"  # HTTP 429, maybe with Retry-After (ASSUMED)
    SERVER = "server"  # HTTP 5xx (ASSUMED)
    HTTP = "http"  # another status, or an answer that is not what the protocol says
    STREAM_ERROR = "stream_error"  # the gateway reported an error in its answer (ASSUMED shapes)
    CUT = "cut"  # the connection broke
    INCOMPLETE = "incomplete"  # the stream ended without its final chunk
    TOO_LARGE = "too_large"  # an answer or an image over the size limit
    IMAGE = "image"  # an image given as a URL could not be fetched
    # Set by the app, never by the adapter.
    RESTART = "restart"  # the process died mid-answer
    EMPTY = "empty"  # an image model's answer with no text and no image


class GatewayError(Exception):
    """A failure talking to the gateway; `kind` says which, `message` is for the user."""

    def __init__(
        self,
        kind: ErrorKind | str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = ErrorKind(kind)  # a plain string is taken too; an unknown one raises ValueError
        self.message = message
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"GatewayError({self.kind.value!r}, {self.message!r}, status={self.status!r})"


def error_from_response(status: int, body: bytes, headers: Mapping[str, str], api_key: str = "") -> GatewayError:
    """A `GatewayError` for a non-2xx answer (ASSUMED: the statuses' meanings and the
    error body shapes, docs/UPSTREAM.md "Errors before the stream starts"), without `api_key`."""
    retry_after = _retry_after(headers)
    if status in (401, 403):
        kind, sentence = ErrorKind.KEY_REFUSED, "The gateway refused the API key"
    elif status == 404:
        kind, sentence = ErrorKind.NOT_FOUND, "The gateway does not know this service or model"
    elif status in (400, 422):
        kind, sentence = ErrorKind.INVALID, "The gateway rejected the request"
    elif status == 429:
        kind, sentence = ErrorKind.RATE_LIMITED, "The gateway is rate limiting requests"
        if retry_after is not None:
            sentence += f"; retry after {math.ceil(retry_after)} s"
    elif 500 <= status <= 599:
        kind, sentence = ErrorKind.SERVER, f"The gateway failed (HTTP {status})"
    else:
        kind, sentence = ErrorKind.HTTP, f"The gateway answered HTTP {status}"
    text = error_text(body, api_key)
    message = f"{sentence}: {text}" if text else f"{sentence}."
    return GatewayError(kind, message, status=status, retry_after=retry_after)


def transport_error(exc: Exception, where: str, answered: bool) -> GatewayError:
    """A GatewayError for an httpx failure: timeouts, refused or broken connections."""
    if isinstance(exc, httpx.TimeoutException):
        if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
            return GatewayError(ErrorKind.TIMEOUT, f"Timed out connecting to the gateway at {where}.")
        return GatewayError(ErrorKind.TIMEOUT, "The gateway did not answer in time (timed out waiting for data).")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        if answered:
            return GatewayError(ErrorKind.CUT, "The connection to the gateway broke during the answer.")
        return GatewayError(ErrorKind.CUT, f"The connection to the gateway at {where} broke before it answered.")
    # Refused, a bad base URL, an unsupported scheme, a proxy failure...
    return GatewayError(ErrorKind.CONNECT, f"Could not connect to the gateway at {where}{reason(exc)}.")


# --- The API key, out of everything the gateway says -------------------------------------

REDACTED = "[API key]"


def scrub(value: Any, api_key: str) -> Any:
    """`value` with `api_key` replaced in every string, dict keys and nested values
    included. The gateway may echo the key anywhere (an error, a warning, metadata, the
    text): nothing it says is stored, shown or logged before this."""
    if not api_key:
        return value
    if isinstance(value, str):
        return value.replace(api_key, REDACTED) if api_key in value else value
    if isinstance(value, dict):
        return {scrub(k, api_key): scrub(v, api_key) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(item, api_key) for item in value]
    return value


def scrub_parsed(value: Any, raw: str, api_key: str) -> Any:
    """`scrub` for a value parsed from the JSON text `raw`, skipped (the cost of one
    `in` per chunk) when `raw` holds neither the key nor an escape: then every string in
    the value is a piece of `raw`, so none can hold the key."""
    if api_key and (api_key in raw or "\\" in raw):
        return scrub(value, api_key)
    return value


def redacted(exc: GatewayError, api_key: str) -> GatewayError:
    # The last guard for a message the adapter made: texts were scrubbed before they were cut.
    if not api_key or api_key not in exc.message:
        return exc
    return GatewayError(
        exc.kind,
        exc.message.replace(api_key, REDACTED),
        status=exc.status,
        retry_after=exc.retry_after,
    )


def log_failure(exc: GatewayError, where: str) -> GatewayError:
    """Log one failed request at WARNING, and return its error to raise.

    Pass only a redacted error: its message may quote the gateway's body.
    """
    status = f"HTTP {exc.status}" if exc.status is not None else "no HTTP status"
    retry = f", retry after {exc.retry_after:g} s" if exc.retry_after is not None else ""
    log.warning("Request to %s failed: %s (%s%s): %s", where, exc.kind, status, retry, exc.message)
    return exc


# --- The gateway's own words ------------------------------------------------------------

_MAX_TEXT = 500


def error_text(body: bytes, api_key: str = "") -> str:
    """The gateway's own words from an error body (JSON shapes, else the plain text),
    without `api_key`."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return ""
    try:
        value = json.loads(text, parse_float=Decimal)
    except ValueError:
        value = text
    # Scrubbed before message_of cuts it: a key cut in two would show most of itself.
    return message_of(scrub(value, api_key))


def message_of(value: Any) -> str:
    """FastAPI `detail` (string or list of {loc, msg}), `error` (string or object),
    `message`, `msg`, `content`; anything else as JSON (ASSUMED shapes). Cut to
    _MAX_TEXT: pass a value already scrubbed of the API key."""
    if isinstance(value, str):
        return _cap(value.strip())
    if isinstance(value, list):
        return "; ".join(filter(None, (message_of(item) for item in value)))
    if isinstance(value, dict):
        if "msg" in value:
            loc = value.get("loc")
            msg = message_of(value["msg"])
            if isinstance(loc, list) and loc:
                return f"{'.'.join(str(part) for part in loc)}: {msg}"
            return msg
        for key in ("detail", "error", "message", "content"):
            inner = value.get(key)
            if isinstance(inner, (str, list, dict)) and inner:
                return message_of(inner)
    if value is None:
        return ""
    return _cap(dumps(value))


def _cap(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT].rstrip() + "…"


def dumps(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


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
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def human_size(n: int) -> str:
    """1536 -> "1.5 KB", 10485760 -> "10 MB" (binary units)."""
    if n < 1024:
        return f"{n} bytes"
    size = n / 1024
    for unit in ("KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            break
        size /= 1024
    return f"{size:.1f}".rstrip("0").rstrip(".") + f" {unit}"


def reason(exc: Exception) -> str:
    """httpx's words for a failure, in parentheses, or nothing."""
    text = str(exc).strip()
    return f" ({text})" if text else ""


def display_url(url: str) -> str:
    # Never show credentials that someone put in the URL (http://user:pass@host).
    return re.sub(r"//[^/@]*@", "//", url)
