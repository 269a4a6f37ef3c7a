"""The shared key never reaches the page, the socket, the exports or the database, even
when the gateway echoes it in warnings, metadata, the final chunk or a long error."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from conversations.models import Conversation, CostLog, Message
from tests.chat import db, no_generation_left, open_socket, send, until_done
from tests.fakegateway import Reply, chunk, error_reply, sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("shared_key_allowed", "no_retries")]

# As long as a real key: a piece of it that survived a cut would still be a leak.
KEY = "sk_live_5c0b8e2f7a9d4c1e6b3a8f0d2e"


def leaked(text: str) -> list[str]:
    """Every 10-character piece of the key found in `text`."""
    return [KEY[i : i + 10] for i in range(len(KEY) - 9) if KEY[i : i + 10] in text]


@sync_to_async
def get(user, url) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


async def test_a_key_the_gateway_echoes_is_never_stored_or_shown(alice, db_models, gateway_url, fake_gateway, settings):
    settings.UPSTREAM_API_KEY = KEY  # the site's shared key, which alice chats with
    fake_gateway.queue(
        Reply(
            parts=[
                sse(chunk("Hello")),
                sse({"type": "metadata", "name": "metadata", "content": {"billed_key": KEY}}),
                sse(
                    {
                        "final": True,
                        "usage": {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8},
                        "cost": {"input": "0.001", "output": "0.002", "total": "0.003"},
                        "warnings": [f"Key {KEY} is nearly out of quota"],
                        "key": KEY,
                    }
                ),
            ]
        ),
        # A long error with the key where a cut at 500 characters would split it.
        error_reply(500, "x" * 480 + KEY + "y" * 86),
    )
    model = db_models["flash"].pk
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", model))
    frames = await until_done(socket)
    conversation = await db(lambda: Conversation.objects.get())
    await socket.send_to(text_data=send("Again", model, conversation=conversation.pk))
    frames += await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    assert [r.headers["x-api-key"] for r in fake_gateway.requests] == [KEY, KEY]

    first, second = await db(lambda: list(Message.objects.filter(role="assistant").order_by("id")))
    assert (first.status, first.content, second.status) == ("complete", "Hello", "failed")
    assert first.warnings == ["Key [API key] is nearly out of quota"]
    assert first.extras == [{"type": "metadata", "name": "metadata", "content": {"billed_key": "[API key]"}}]
    assert second.error.startswith("The gateway failed (HTTP 500): xxx") and "[API key]" in second.error
    log = await db(lambda: CostLog.objects.get())
    assert log.warnings == first.warnings and log.final_chunk["key"] == "[API key]"

    stored = [repr((m.content, m.error, m.warnings, m.extras)) for m in (first, second)]
    stored += [repr((log.warnings, log.final_chunk))]
    markdown = await get(alice, f"/c/{conversation.pk}/export.md")
    document = await get(alice, f"/c/{conversation.pk}/export.json")
    page = await get(alice, f"/c/{conversation.pk}/")
    assert "nearly out of quota" in markdown and '"billed_key": "[API key]"' in document
    for text in [*frames, *stored, markdown, document, page]:
        assert leaked(text) == []
