"""What the page sends on the chat socket, read without trusting it.

A frame is a JSON object ({"action": ..., fields}). Whatever else arrives gets a clear
message (FrameError's text) and the socket stays open: an exception escaping the
consumer would close it with 1011 and log a traceback, which any page could cause.
"""

from __future__ import annotations

import json
import math

UNREADABLE = "That request could not be read. Reload the page and try again."
NOT_UNICODE = "That request holds text that is not valid Unicode (half of an emoji, perhaps). Remove it and try again."

# The database's largest id (a BigAutoField); a larger one would overflow the driver.
MAX_ID = 2**63 - 1


class FrameError(ValueError):
    """A frame the socket refuses; the text says why, for the page to show."""


def parse(text: str) -> dict:
    """The frame's object, or FrameError."""
    try:
        # NaN, Infinity and 1e400 are no ids, and not JSON either; nesting deeper than
        # Python's recursion limit raises RecursionError, not ValueError.
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        raise FrameError(UNREADABLE) from None
    if not isinstance(data, dict):
        raise FrameError(UNREADABLE)
    if not _encodable(data):
        raise FrameError(NOT_UNICODE)
    return data


def object_id(value: object) -> int | None:
    """An id as the page sends it (a number, or digits in a string), or None if it cannot
    name a row: a float, a bool, zero or less, past 64 bits."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= len(str(MAX_ID)):
        value = int(value)
    if type(value) is int and 0 < value <= MAX_ID:
        return value
    return None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range")
    return number


def _encodable(data: dict) -> bool:
    """False if some string holds a lone surrogate (a \\ud800 escape without its pair):
    no database, template or socket can encode it as UTF-8."""
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except (UnicodeEncodeError, RecursionError):
        return False
    return True
