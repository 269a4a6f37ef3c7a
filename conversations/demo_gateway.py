"""The built-in demo gateway, served when no UPSTREAM_BASE_URL is set.

It speaks the gateway's real protocol (UPSTREAM.md) over the app's own HTTP socket:
SSE chunks, thinking chunks for thinking models, and a final chunk with usage and a
cost written in exponent form. The chat reaches it through the same client code as a
real gateway, so `make run` exercises the whole path with no account anywhere.
"""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal

from django.conf import settings
from django.http import HttpResponseNotAllowed, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

# Prices per token, chosen to look like a small model's.
PRICE_INPUT = Decimal("7.5E-8")
PRICE_OUTPUT = Decimal("3E-7")


def _answer(prompt: str) -> str:
    quoted = "\n".join(f"> {line}" for line in prompt.splitlines()[:6])
    return (
        "This answer comes from chatsite's **built-in demo gateway**, not from a real model. "
        "You wrote:\n\n"
        f"{quoted}\n\n"
        "Point `UPSTREAM_BASE_URL` at your gateway for real answers. Meanwhile, here is what "
        "rendering looks like:\n\n"
        "- answers stream in as they are generated;\n"
        "- when they end they are shown as *sanitised* markdown;\n"
        "- every answer's tokens and cost go into an exact ledger.\n\n"
        "| chunk | arrives |\n|---|---|\n| first | at once |\n| later | coalesced |\n\n"
        "```python\ndef greet(name: str) -> str:\n    return f\"Hello, {name}!\"\n```\n"
    )


def _thinking(prompt: str) -> str:
    first_line = prompt.strip().splitlines()[0][:80]
    return (
        f"The user says \u201c{first_line}\u201d. I am the demo gateway, so I cannot really "
        "reason about it. I will explain that, echo the message, and show some markdown: "
        "a list, a table and a code block."
    )


def _pieces(text: str) -> list[str]:
    """Word-sized increments, as a model would stream them."""
    return re.findall(r"\S+\s*|\s+", text)


def _event(obj: dict) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def _chunk(name: str, content: str) -> bytes:
    return _event({"type": "text", "name": name, "content": content, "done": False, "index": 0, "is_final": False})


def _final(input_tokens: int, output_tokens: int) -> bytes:
    cost_in = PRICE_INPUT * input_tokens
    cost_out = PRICE_OUTPUT * output_tokens
    # Written by hand: json.dumps has no exact decimals, and the real gateway uses
    # exponent form for small costs, which the client must read exactly.
    cost = f'{{"input": {cost_in:e}, "output": {cost_out:e}, "total": {cost_in + cost_out:e}}}'
    usage = json.dumps(
        {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}
    )
    return f'data: {{"final": true, "usage": {usage}, "cost": {cost}, "warnings": []}}\n\n'.encode()


def _prompt(body) -> str | None:
    if not isinstance(body, dict):
        return None
    items = body.get("input")
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        return None
    content = items[0].get("content")
    return content if isinstance(content, str) and content.strip() else None


@csrf_exempt
async def generate_stream(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.headers.get("X-API-Key"):
        return JsonResponse({"detail": "Missing API key (X-API-Key)."}, status=401)
    try:
        body = json.loads(request.body)
    except ValueError:
        return JsonResponse({"detail": "The body is not JSON."}, status=422)
    prompt = _prompt(body)
    if prompt is None or not body.get("service_name") or not body.get("model_name"):
        return JsonResponse(
            {"detail": [{"loc": ["body", "input"], "msg": "service_name, model_name and a text input are required"}]},
            status=422,
        )
    parameters = body.get("parameters") or {}
    thinking = _thinking(prompt) if parameters.get("enable_thinking") else ""
    answer = _answer(prompt)
    history_words = sum(
        len(str(item.get("content", "")).split())
        for turn in body.get("history") or []
        for item in (turn.get("content") or [])
        if isinstance(item, dict)
    )
    input_tokens = len(prompt.split()) + history_words + 8
    delay = settings.DEMO_GATEWAY_DELAY

    async def events():
        yield b": demo gateway\n\n"
        for piece in _pieces(thinking):
            yield _chunk("thinking", piece)
            await asyncio.sleep(delay)
        for piece in _pieces(answer):
            yield _chunk("output", piece)
            await asyncio.sleep(delay)
        output_tokens = len(_pieces(thinking)) + len(_pieces(answer))
        yield _final(input_tokens, output_tokens)

    return StreamingHttpResponse(
        events(), content_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
