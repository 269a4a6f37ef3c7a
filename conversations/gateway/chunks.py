"""What one chunk means (KNOWN shapes, docs/UPSTREAM.md "Stream format"), for the stream
and for the items of a whole /generate answer alike."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from conversations.gateway.errors import dumps
from conversations.gateway.types import Delta, Extra, Final


def is_final(chunk: dict) -> bool:
    # "final": true marks only the final chunk in the docs; "is_final" also appears on
    # content chunks, so it needs the usage/cost of a real final chunk.
    if chunk.get("final") is True:
        return True
    return chunk.get("is_final") is True and ("usage" in chunk or "cost" in chunk)


def content_item(chunk: dict) -> Delta | Extra | None:
    """Text for "output" or "thinking" (None if empty); anything else is kept as an Extra."""
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


def final_of(chunk: dict) -> Final:
    """The usage, exact costs and warnings of a final chunk (or of a whole /generate answer)."""
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
            texts.append(str(text) if text else dumps(warning))
        else:
            texts.append(str(warning))
    return texts


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
