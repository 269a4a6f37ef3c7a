"""The built-in demo gateway, served when no UPSTREAM_BASE_URL is set.

It speaks the gateway's real protocol (docs/UPSTREAM.md) over the app's own HTTP socket:
SSE chunks, thinking chunks for thinking models, and a final chunk with usage and a
cost written in exponent form; and, for image models, POST /generate answering with a
small picture drawn by Pillow, as base64. The chat reaches it through the same client
code as a real gateway, so `make run` exercises the whole path with no account anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import colorsys
import hashlib
import io
import json
import re
from decimal import Decimal

from django.conf import settings
from django.http import (
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
    StreamingHttpResponse,
)
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
        '```python\ndef greet(name: str) -> str:\n    return f"Hello, {name}!"\n```\n'
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


def _chunk(name: str, content: str, index: int) -> bytes:
    """`index` is the item's position in the output array: each item has its own, as
    clients that gather the text by index (the gateway's own example) expect."""
    return _event({"type": "text", "name": name, "content": content, "done": False, "index": index, "is_final": False})


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


def _prompt(body) -> str:
    if not isinstance(body, dict):
        return ""
    items = body.get("input")
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        return ""
    content = items[0].get("content")
    return content if isinstance(content, str) and content.strip() else ""


def _checked_body(request):
    """The request's JSON body, or the error response the real gateway would give."""
    if request.method != "POST":
        return None, HttpResponseNotAllowed(["POST"])
    if not request.headers.get("X-API-Key"):
        return None, JsonResponse({"detail": "Missing API key (X-API-Key)."}, status=401)
    try:
        body = json.loads(request.body)
    except ValueError:
        return None, JsonResponse({"detail": "The body is not JSON."}, status=422)
    if not _prompt(body) or not body.get("service_name") or not body.get("model_name"):
        return None, JsonResponse(
            {"detail": [{"loc": ["body", "input"], "msg": "service_name, model_name and a text input are required"}]},
            status=422,
        )
    return body, None


def _picture(prompt: str) -> bytes:
    """A 384×256 PNG: a gradient in colours taken from the prompt, and the prompt's first words."""
    from PIL import Image, ImageDraw, ImageFont

    digest = hashlib.sha256(prompt.encode()).digest()
    hue = digest[0] / 255
    width, height = 384, 256
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        r, g, b = colorsys.hsv_to_rgb((hue + y / height / 3) % 1, 0.55, 0.95 - y / height / 3)
        draw.line([(0, y), (width, y)], fill=(int(r * 255), int(g * 255), int(b * 255)))
    for i in range(6):  # a few circles, placed by the prompt
        x, y, size = digest[1 + i] * width // 255, digest[8 + i] * height // 255, 12 + digest[16 + i] % 40
        draw.ellipse([x - size, y - size, x + size, y + size], outline=(255, 255, 255), width=3)
    words = " ".join(prompt.split()[:6])[:40]
    font = ImageFont.load_default(size=22)
    draw.rectangle([0, height - 48, width, height], fill=(0, 0, 0))
    draw.text((12, height - 38), words, fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


@csrf_exempt
async def generate(request):
    """POST /generate (not streaming), as image models answer: one JSON object."""
    body, error = _checked_body(request)
    if error is not None:
        return error
    prompt = _prompt(body)
    await asyncio.sleep(settings.DEMO_GATEWAY_DELAY * 30)  # long enough to see the progress indicator
    png = await asyncio.to_thread(_picture, prompt)
    text = "The **demo gateway** drew this picture for you; a real image model would paint your prompt."
    output = [
        {"type": "image", "name": "output", "content": base64.b64encode(png).decode(), "mime_type": "image/png"},
        {"type": "text", "name": "output", "content": text},
    ]
    input_tokens, output_tokens = len(prompt.split()) + 8, 1290  # an image costs like ~1,300 tokens
    cost_in, cost_out = PRICE_INPUT * input_tokens, PRICE_OUTPUT * output_tokens
    # Written by hand, like the stream's final chunk: exact costs in exponent form.
    usage = json.dumps(
        {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}
    )
    cost = f'{{"input": {cost_in:e}, "output": {cost_out:e}, "total": {cost_in + cost_out:e}}}'
    payload = f'{{"output": {json.dumps(output)}, "usage": {usage}, "cost": {cost}, "warnings": []}}'
    return HttpResponse(payload, content_type="application/json")


@csrf_exempt
async def generate_stream(request):
    body, error = _checked_body(request)
    if error is not None:
        return error
    prompt = _prompt(body)
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
            yield _chunk("thinking", piece, 0)
            await asyncio.sleep(delay)
        output_index = 1 if thinking else 0  # the thinking item comes first
        for piece in _pieces(answer):
            yield _chunk("output", piece, output_index)
            await asyncio.sleep(delay)
        output_tokens = len(_pieces(thinking)) + len(_pieces(answer))
        yield _final(input_tokens, output_tokens)

    return StreamingHttpResponse(
        events(), content_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
