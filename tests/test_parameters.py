"""A conversation's Settings panel: stored on the conversation, validated, and sent as
`parameters` with only the keys the user set (thinking on by default for thinking models)."""

from __future__ import annotations

import pytest

from conversations import gateway
from conversations.models import Conversation, Message
from tests.chat import db, no_generation_left, open_socket, send, until_done
from tests.fakegateway import stream_reply


def test_parameters_hold_only_what_was_set():
    assert gateway.build_parameters() is None
    assert gateway.build_parameters(enable_thinking=False, system_prompt="", temperature=None) == {
        "enable_thinking": False
    }
    assert gateway.build_parameters(system_prompt="Be brief.", temperature=0.0, max_output_tokens=256) == {
        "system_prompt": "Be brief.",
        "temperature": 0.0,
        "max_output_tokens": 256,
    }


@pytest.mark.django_db
def test_it_saves_settings_and_says_what_is_wrong(client, alice, db_models, settings):
    settings.MAX_OUTPUT_TOKENS = 8192
    conversation = Conversation.objects.create(user=alice, title="Tuned")
    client.force_login(alice)
    url = f"/c/{conversation.pk}/settings/"
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert f'hx-post="{url}"' in page and ">Settings</summary>" in page
    assert 'name="enable_thinking"' in page and "checked" in page  # on by default

    bad = {"system_prompt": "x", "temperature": "2.5", "max_output_tokens": "0"}
    response = client.post(url, bad, HTTP_HX_REQUEST="true")
    assert response.status_code == 422  # htmx swaps it in (base.html's responseHandling)
    text = response.content.decode()
    assert "Temperature must be from 0 to 2." in text
    assert "Maximum output tokens must be at least 1." in text
    assert "Not saved" in text
    for value, message in [("abc", "must be a whole number"), ("9000", "can be at most 8,192")]:
        text = client.post(url, {"max_output_tokens": value}).content.decode()
        assert message in text
    assert "Temperature must be a number from 0 to 2" in client.post(url, {"temperature": "warm"}).content.decode()
    settings.MAX_MESSAGE_CHARS = 10
    assert "the limit is 10" in client.post(url, {"system_prompt": "x" * 11}).content.decode()
    settings.MAX_MESSAGE_CHARS = 100
    conversation.refresh_from_db()
    assert (conversation.system_prompt, conversation.temperature, conversation.max_output_tokens) == ("", None, None)

    response = client.post(
        url, {"system_prompt": " Answer in French. ", "temperature": "0.3", "max_output_tokens": "512"}
    )
    assert response.status_code == 200 and "Saved" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.system_prompt == "Answer in French."
    assert (conversation.temperature, conversation.max_output_tokens, conversation.enable_thinking) == (0.3, 512, False)


@pytest.mark.django_db
def test_bob_cannot_change_alices_settings(client, alice, bob):
    conversation = Conversation.objects.create(user=alice, title="Alice's", system_prompt="Secret prompt")
    client.force_login(bob)
    assert client.post(f"/c/{conversation.pk}/settings/", {"system_prompt": "Bob's"}).status_code == 404
    assert client.get(f"/c/{conversation.pk}/settings/").status_code in (404, 405)
    conversation.refresh_from_db()
    assert conversation.system_prompt == "Secret prompt"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_key_allowed")
async def test_the_gateway_gets_the_settings_as_parameters(alice, db_models, gateway_url, fake_gateway):
    fake_gateway.queue(stream_reply(["One"]), stream_reply(["Two"]), stream_reply(["Three"]))
    conversation = await db(
        lambda: Conversation.objects.create(
            user=alice,
            title="Tuned",
            system_prompt="Answer in French.",
            temperature=0.3,
            max_output_tokens=512,
            enable_thinking=False,
        )
    )
    socket = await open_socket(alice, f"/ws/chat/{conversation.pk}/")
    await socket.send_to(text_data=send("Hello", db_models["thinker"].pk, conversation.pk))
    await until_done(socket)
    assert fake_gateway.requests[0].json["parameters"] == {
        "enable_thinking": False,
        "system_prompt": "Answer in French.",
        "temperature": 0.3,
        "max_output_tokens": 512,
    }
    # The model changes mid-conversation; enable_thinking is for thinking models only.
    await socket.send_to(text_data=send("Again", db_models["flash"].pk, conversation.pk))
    await until_done(socket)
    assert fake_gateway.requests[1].json["parameters"] == {
        "system_prompt": "Answer in French.",
        "temperature": 0.3,
        "max_output_tokens": 512,
    }
    # Each answer says which model wrote it.
    models = await db(lambda: list(Message.objects.filter(role="assistant").values_list("model_name", flat=True)))
    assert models == ["gemini-3-pro-thinking-preview", "gemini-2.0-flash"]

    # Nothing set, a plain model: no parameters at all.
    await db(
        lambda: Conversation.objects.filter(pk=conversation.pk).update(
            system_prompt="", temperature=None, max_output_tokens=None
        )
    )
    await socket.send_to(text_data=send("Plain", db_models["flash"].pk, conversation.pk))
    await until_done(socket)
    assert "parameters" not in fake_gateway.requests[2].json
    await socket.disconnect()
    await no_generation_left()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shared_key_allowed")
async def test_a_new_chat_sends_its_settings_with_the_first_message(alice, db_models, gateway_url, fake_gateway):
    fake_gateway.queue(stream_reply(["Bonjour"]))
    socket = await open_socket(alice)
    fields = {
        "settings_included": "1",
        "system_prompt": "Answer in French.",
        "temperature": "",
        "max_output_tokens": "",
    }
    # Invalid settings: refused, nothing stored.
    await socket.send_to(text_data=send("Hello", db_models["thinker"].pk, **{**fields, "temperature": "3"}))
    reply = await socket.receive_from(timeout=5)
    assert "Check the settings: Temperature must be from 0 to 2." in reply
    assert await db(lambda: Conversation.objects.count()) == 0

    # "enable_thinking" is missing: its box was unticked.
    await socket.send_to(text_data=send("Hello", db_models["thinker"].pk, **fields))
    frames = await until_done(socket)
    assert fake_gateway.requests[0].json["parameters"] == {
        "enable_thinking": False,
        "system_prompt": "Answer in French.",
    }
    conversation = await db(lambda: Conversation.objects.get())
    assert (conversation.system_prompt, conversation.enable_thinking) == ("Answer in French.", False)
    # The panel is now the conversation's own (saved with a button).
    accepted = next(f for f in frames if 'id="conversation-field"' in f)
    assert f'hx-post="/c/{conversation.pk}/settings/"' in accepted and 'id="settings-panel"' in accepted
    await socket.disconnect()
    await no_generation_left()
