"""The API keys page, who may touch which key, and the keys the gateway receives."""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import sync_to_async
from django.test import RequestFactory
from django.views.debug import SafeExceptionReporterFilter

from conversations.keys import views
from conversations.models import ApiKey, Message, SiteSettings
from tests.accounts import add_key
from tests.chat import db, no_generation_left, open_socket, send, until_done
from tests.fakegateway import error_reply, stream_reply

SECRET = "sk_live_4f9a8b7c6d5e4f3a2b1c0d9e8f7a1b2"
BOBS = "sk_live_b0b0b0b0b0b0b0b0b0b0b0b0b0b0ffff"


# --- the page ------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_adds_a_key_and_shows_only_its_mask(client, alice):
    client.force_login(alice)
    response = client.post("/keys/", {"label": "Personal", "value": f"  {SECRET}\n"})
    assert response.status_code == 302
    key = ApiKey.objects.get(user=alice)
    assert key.label == "Personal" and key.masked == "sk_…a1b2" and key.in_use
    assert key.reveal() == SECRET  # stripped, then stored encrypted
    page = client.get("/keys/").content.decode()
    assert "sk_…a1b2" in page and "Personal" in page and "In use" in page
    assert SECRET not in page and SECRET[:-4] not in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value, message",
    [("", "This field is required"), ("sk_a b", "no spaces"), ("sk_\x07x", "no control"), ("k" * 513, "at most 512")],
)
def test_it_refuses_bad_values_and_never_echoes_them(client, alice, value, message):
    client.force_login(alice)
    response = client.post("/keys/", {"label": "Personal", "value": value})
    assert response.status_code == 400
    page = response.content.decode()
    assert message in page
    assert not ApiKey.objects.exists()
    if value:
        assert f'value="{value}"' not in page


@pytest.mark.django_db
def test_labels_are_unique_per_user(client, alice, bob):
    add_key(alice, "Personal", SECRET)
    add_key(bob, "Personal", BOBS)  # another user may use the same label
    client.force_login(alice)
    response = client.post("/keys/", {"label": "Personal", "value": "sk_other_0123456789abcd"})
    assert response.status_code == 400
    assert "already have a key with this label" in response.content.decode()
    assert "sk_other_0123456789abcd" not in response.content.decode()
    assert ApiKey.objects.filter(user=alice).count() == 1


@pytest.mark.django_db
def test_it_switches_replaces_and_deletes_keys(client, alice):
    first = add_key(alice, "First", SECRET)
    second = add_key(alice, "Second", "sk_second_0123456789abcdef", in_use=False)
    client.force_login(alice)

    client.post(f"/keys/{second.pk}/use/")
    assert ApiKey.for_user(alice) == second
    assert list(ApiKey.objects.filter(in_use=True)) == [second]

    ApiKey.objects.filter(pk=second.pk).update(refused_at="2026-01-01T00:00Z")
    client.post(f"/keys/{second.pk}/replace/", {"value": "sk_second_new_value_9876wxyz"})
    second.refresh_from_db()
    assert second.reveal() == "sk_second_new_value_9876wxyz" and second.masked == "sk_…wxyz"
    assert not second.refused

    response = client.post(f"/keys/{second.pk}/replace/", {"value": "bad value"})
    second.refresh_from_db()
    assert second.reveal() == "sk_second_new_value_9876wxyz"
    assert "was not changed" in client.get(response.url).content.decode()

    confirm = client.get(f"/keys/{second.pk}/delete/")
    assert "Delete “Second”?" in confirm.content.decode()
    assert ApiKey.objects.filter(pk=second.pk).exists()  # GET only asks
    client.post(f"/keys/{second.pk}/delete/")
    assert not ApiKey.objects.filter(pk=second.pk).exists()
    first.refresh_from_db()
    assert first.in_use  # the remaining key takes over


@pytest.mark.django_db
def test_bob_gets_404_for_everything_of_alices(client, alice, bob):
    key = add_key(alice, "Personal", SECRET, in_use=False)
    client.force_login(bob)
    assert client.post(f"/keys/{key.pk}/use/").status_code == 404
    assert client.post(f"/keys/{key.pk}/replace/", {"value": BOBS}).status_code == 404
    assert client.get(f"/keys/{key.pk}/delete/").status_code == 404
    assert client.post(f"/keys/{key.pk}/delete/").status_code == 404
    assert "Personal" not in client.get("/keys/").content.decode()
    key.refresh_from_db()
    assert key.reveal() == SECRET and not key.in_use


@pytest.mark.django_db
def test_the_pages_need_a_login(client, alice):
    key = add_key(alice, "Personal", SECRET)
    for url in ("/keys/", f"/keys/{key.pk}/delete/"):
        assert client.get(url).url.startswith("/accounts/login/")


@pytest.mark.django_db
def test_error_reports_hide_the_posted_key(alice):
    request = RequestFactory().post("/keys/", {"label": "x", "value": SECRET})
    request.user = alice
    request.session = {}
    request._messages = type("M", (), {"add": lambda *a, **k: None})()
    views.api_keys(request)
    hidden = SafeExceptionReporterFilter().get_post_parameters(request)
    assert hidden["value"] != SECRET and set(hidden["value"]) == {"*"}


@pytest.mark.django_db
def test_the_admin_shows_masks_and_sets_the_shared_key(admin_client, alice):
    add_key(alice, "Personal", SECRET)
    page = admin_client.get("/admin/conversations/apikey/").content.decode()
    assert "sk_…a1b2" in page and SECRET not in page

    admin_client.post(
        "/admin/conversations/sitesettings/add/",
        {"new_shared_key": "sk_shared_0123456789abcdef", "allow_shared_key": "on"},
    )
    site = SiteSettings.load()
    assert site.shared_key() == "sk_shared_0123456789abcdef" and site.allow_shared_key
    page = admin_client.get(f"/admin/conversations/sitesettings/{site.pk}/change/").content.decode()
    assert "sk_…cdef" in page and "sk_shared_0123456789abcdef" not in page


# --- the keys the gateway receives ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_each_user_chats_with_their_own_key(alice, bob, db_models, gateway_url, fake_gateway, caplog):
    caplog.set_level(logging.DEBUG)  # httpx and httpcore log requests at DEBUG
    await db(lambda: add_key(alice, "Personal", SECRET))
    await db(lambda: add_key(bob, "Mine", BOBS))
    frames = []
    for user in (alice, bob):
        socket = await open_socket(user)
        await socket.send_to(text_data=send("Hi", db_models["flash"].pk))
        frames += await until_done(socket)
        await socket.disconnect()
    await no_generation_left()

    assert [r.headers["x-api-key"] for r in fake_gateway.requests] == [SECRET, BOBS]
    assert not any(SECRET in f or BOBS in f for f in frames)  # never back to a browser
    assert "HTTP Request: POST" in caplog.text  # the client's own log lines were captured...
    assert SECRET not in caplog.text and BOBS not in caplog.text  # ...and hold no key
    key = await db(lambda: ApiKey.objects.get(user=alice))
    assert key.last_used_at is not None and not key.refused


@pytest.mark.django_db(transaction=True)
async def test_without_a_key_the_user_is_asked_for_one(alice, db_models, gateway_url, fake_gateway):
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", db_models["flash"].pk))
    reply = await socket.receive_from(timeout=5)
    await socket.disconnect()
    assert "Add your gateway API key" in reply and 'href="/keys/"' in reply
    assert await db(lambda: Message.objects.count()) == 0
    assert fake_gateway.requests == []


@pytest.mark.django_db(transaction=True)
async def test_the_shared_key_is_used_when_allowed(alice, db_models, gateway_url, fake_gateway, shared_key_allowed):
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", db_models["flash"].pk))
    await until_done(socket)

    @sync_to_async
    def set_shared():
        site = SiteSettings.load()
        site.set_shared_key("sk_admin_shared_0123456789")
        site.save()

    await set_shared()
    await socket.send_to(text_data=send("Again", db_models["flash"].pk))
    await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    assert [r.headers["x-api-key"] for r in fake_gateway.requests] == ["sk_test_site_key", "sk_admin_shared_0123456789"]


@pytest.mark.django_db(transaction=True)
async def test_a_refused_key_is_marked_until_it_works_again(alice, db_models, gateway_url, fake_gateway):
    await db(lambda: add_key(alice, "Personal", SECRET))
    fake_gateway.queue(error_reply(401, {"detail": f"Invalid API key {SECRET}"}), stream_reply(["Works now"]))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", db_models["flash"].pk))
    frames = await until_done(socket)
    assert "refused the API key" in frames[-1]
    assert 'href="/keys/"' in frames[-1]
    assert SECRET not in "".join(frames)  # the gateway echoed it; we do not
    key = await db(lambda: ApiKey.objects.get())
    assert key.refused
    message = await db(lambda: Message.objects.get(role="assistant"))
    assert message.error_kind == "key_refused" and SECRET not in message.error

    await socket.send_to(text_data=send("Again", db_models["flash"].pk))
    await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    key = await db(lambda: ApiKey.objects.get())
    assert not key.refused


@pytest.mark.django_db(transaction=True)
async def test_a_rotated_key_still_reaches_the_gateway(alice, db_models, gateway_url, fake_gateway, settings):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    old, new = settings.FIELD_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()
    await db(lambda: add_key(alice, "Personal", SECRET))
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    await db(lambda: call_command("rotate_encryption_keys", verbosity=0, stdout=open("/dev/null", "w")))
    settings.FIELD_ENCRYPTION_KEYS = [new]

    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Hi", db_models["flash"].pk))
    await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    assert fake_gateway.requests[0].headers["x-api-key"] == SECRET
