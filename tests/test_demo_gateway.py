"""The demo gateway against the gateway's own example clients (docs/gateway-streaming-page.txt).

Their code is taken from the page as it is written and run against the demo gateway
that the app serves under Daphne: whatever a client of the real gateway does with its
stream, it can do with the demo's. The examples use `requests`, which chatsite does not
install: a small stand-in over httpx gives them the two calls they make.
"""

from __future__ import annotations

import json
import sys
import types

import httpx
import pytest

from conversations.gateway import demo
from tests.browser import ROOT

PAGE = (ROOT / "docs" / "gateway-streaming-page.txt").read_text()
PROMPT = "Why is the sky blue?"


def seed_code(first_line: str, stop_line: str) -> str:
    """The page's code from the line starting with `first_line` to the one before `stop_line`."""
    start = PAGE.index("\n" + first_line) + 1
    end = PAGE.index("\n" + stop_line, start) + 1
    return PAGE[start:end]


class _Response:
    """The part of requests.Response the examples read: iter_lines(), as bytes."""

    def __init__(self, client: httpx.Client, response: httpx.Response):
        self._client, self._response = client, response

    def iter_lines(self):
        try:
            for line in self._response.iter_lines():
                yield line.encode()
        finally:
            self._response.close()
            self._client.close()


def _post(url, headers=None, json=None, stream=False, timeout=None):
    client = httpx.Client(timeout=timeout or 30)
    response = client.send(client.build_request("POST", url, headers=headers, json=json), stream=True)
    return _Response(client, response)


@pytest.fixture
def seed_requests(monkeypatch):
    """`import requests` in the examples gets the stand-in."""
    module = types.ModuleType("requests")
    module.post = _post
    module.exceptions = types.SimpleNamespace(Timeout=httpx.TimeoutException, ConnectionError=httpx.TransportError)
    monkeypatch.setitem(sys.modules, "requests", module)


@pytest.fixture
def base_url(demo_app):
    return demo_app.url + "/demo-gateway/api/v1"


def streaming_client(base_url: str):
    namespace: dict = {}
    exec("import json\nimport requests\n" + seed_code("class StreamingClient:", "# Usage with callbacks"), namespace)
    return namespace["StreamingClient"](api_key="sk_demo", base_url=base_url)


def test_the_seed_streaming_client_keeps_thinking_and_output_apart(seed_requests, base_url):
    """The client accumulates by `index`: thinking and output at the same index merged
    into one "thinking" item. Each output item has its own index, as the chunk structure
    says ("position in output array")."""
    thought, written = [], []
    result = streaming_client(base_url).stream(
        service="google-gemini",
        model="gemini-3-pro-thinking-preview",
        inputs=[{"type": "text", "name": "input", "content": PROMPT}],
        parameters={"enable_thinking": True},
        on_thinking=thought.append,
        on_chunk=written.append,
    )
    assert result["output"] == [
        {"type": "text", "name": "thinking", "content": demo._thinking(PROMPT)},
        {"type": "text", "name": "output", "content": demo._answer(PROMPT)},
    ]
    assert "".join(thought) == demo._thinking(PROMPT) and "".join(written) == demo._answer(PROMPT)
    assert result["usage"]["total_tokens"] > 0 and result["cost"]["total"] > 0 and result["warnings"] == []


def test_the_seed_streaming_client_without_thinking_gets_the_output_first(seed_requests, base_url):
    result = streaming_client(base_url).stream(
        service="google-gemini",
        model="gemini-2.0-flash",
        inputs=[{"type": "text", "name": "input", "content": PROMPT}],
    )
    assert result["output"] == [{"type": "text", "name": "output", "content": demo._answer(PROMPT)}]


def test_the_seed_stream_to_file_example_writes_the_answer_and_its_footer(seed_requests, base_url, tmp_path):
    namespace: dict = {}
    exec(seed_code("import requests", "# Usage"), namespace)
    exec(seed_code("def stream_to_file(", "stream_to_file("), namespace)
    namespace["API_URL"] = base_url
    path = tmp_path / "answer.md"
    namespace["stream_to_file"]("google-gemini", "gemini-2.0-flash", PROMPT, str(path))
    answer, footer = path.read_text().split("\n\n---\n")
    assert answer == demo._answer(PROMPT)
    assert footer.startswith("Tokens: ") and "\nCost: $0.0" in footer


async def test_each_output_item_has_its_own_index(settings):
    """The raw chunks: thinking at index 0, the answer at 1; without thinking, the answer at 0."""
    from django.test import AsyncRequestFactory

    settings.DEMO_GATEWAY_DELAY = 0

    async def indexes(parameters: dict) -> set[tuple[str, int]]:
        body = {
            "service_name": "google-gemini",
            "model_name": "gemini-3-pro-thinking-preview",
            "input": [{"type": "text", "name": "input", "content": PROMPT}],
            "parameters": parameters,
        }
        request = AsyncRequestFactory().post(
            "/demo-gateway/api/v1/generate/stream", json.dumps(body), content_type="application/json"
        )
        request.META["HTTP_X_API_KEY"] = "sk_demo"
        response = await demo.generate_stream(request)
        chunks = [
            json.loads(line[6:])
            for part in [p async for p in response.streaming_content]
            for line in part.decode().splitlines()
            if line.startswith("data: ")
        ]
        return {(c["name"], c["index"]) for c in chunks if not c.get("final")}

    assert await indexes({"enable_thinking": True}) == {("thinking", 0), ("output", 1)}
    assert await indexes({}) == {("output", 0)}
