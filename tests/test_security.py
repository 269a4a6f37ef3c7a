"""The security sweep: bob can touch nothing of alice's, the headers and the deploy check."""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from chatsite.asgi import application
from conversations.models import ApiKey, Conversation, Message
from tests.accounts import PASSWORD, add_key, sign_up
from tests.chat import connect, no_generation_left, open_socket

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk_live_4f9a8b7c6d5e4f3a2b1c0d9e8f7a1b2"


def alices_things(alice, model):
    conversation = Conversation.objects.create(user=alice, title="Alice's secret plans", model=model)
    conversation.messages.create(role="user", content="Plans")
    answer = conversation.messages.create(
        role="assistant", content="Secret answer", status="failed", error_kind="server"
    )
    key = add_key(alice, "Personal", SECRET)
    return conversation, answer, key


def snapshot():
    return (
        list(Conversation.objects.values_list("id", "title", "updated_at")),
        list(Message.objects.values_list("id", "content", "status")),
        list(ApiKey.objects.values_list("id", "label", "ciphertext", "in_use", "refused_at")),
    )


@pytest.mark.django_db
def test_bob_gets_404_on_every_url_of_alices(client, alice, bob, db_models):
    conversation, answer, key = alices_things(alice, db_models["flash"])
    before = snapshot()
    client.force_login(bob)
    for method, url in [
        ("get", f"/c/{conversation.pk}/"),
        ("post", f"/keys/{key.pk}/use/"),
        ("post", f"/keys/{key.pk}/replace/"),
        ("get", f"/keys/{key.pk}/delete/"),
        ("post", f"/keys/{key.pk}/delete/"),
    ]:
        response = getattr(client, method)(url, {"value": "sk_bobs_0123456789abc"} if method == "post" else None)
        assert response.status_code == 404, url
    # The admin is for staff only.
    assert client.get(f"/admin/conversations/conversation/{conversation.pk}/change/").status_code == 302
    # Nor do his pages show her conversation where hers do: its title in the sidebar (the
    # apostrophe escaped), its message text in a search's snippet (the query is echoed).
    alices = Client()
    alices.force_login(alice)
    for url, query, text in [
        ("/", None, "Alice&#x27;s secret plans"),
        ("/search/", {"q": "Secret answer"}, "<mark>Secret answer</mark>"),
    ]:
        assert text in alices.get(url, query).content.decode(), url
        assert text not in client.get(url, query).content.decode(), url
    assert snapshot() == before


@pytest.mark.django_db(transaction=True)
async def test_bob_is_refused_every_socket_action_on_alices(alice, bob, db_models, gateway_url, fake_gateway):
    conversation, answer, _ = await sync_to_async(alices_things)(alice, db_models["flash"])
    before = await sync_to_async(snapshot)()

    watcher = await connect(bob, f"/ws/chat/{conversation.pk}/")
    assert not (await watcher.connect())[0]
    socket = await open_socket(bob)
    for frame, refusal in [
        (
            {"action": "send", "message": "Hi", "model": db_models["flash"].pk, "conversation": conversation.pk},
            "conversation was not found",
        ),
        ({"action": "stop", "conversation": conversation.pk}, "conversation was not found"),
        ({"action": "retry", "message": answer.pk}, "answer was not found"),
    ]:
        await socket.send_to(text_data=json.dumps(frame))
        reply = await socket.receive_from(timeout=5)
        assert refusal in reply and "Secret" not in reply
    await socket.disconnect()
    await no_generation_left()
    assert await sync_to_async(snapshot)() == before
    assert fake_gateway.requests == []


# --- which pages may open a socket: the site's own origins, scheme, host and port -------


async def socket_opens(user, origin: str | None, host: str = "127.0.0.1", **extra: str) -> bool:
    """Whether a socket with the user's session cookie opens, for a page at `origin`
    (None: no Origin header) asking the host `host`; `extra` are more headers."""
    client = Client()
    await sync_to_async(client.force_login)(user)
    headers = [(b"host", host.encode()), (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]
    headers += [(name.replace("_", "-").encode(), value.encode()) for name, value in extra.items()]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    opened, _ = await socket.connect()
    if opened:
        await socket.disconnect()
    return opened


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "origin, host",
    [
        ("http://127.0.0.1:8081", "127.0.0.1"),  # another service on the same machine
        ("http://127.0.0.1:8081", "127.0.0.1:8080"),
        ("http://127.0.0.1", "127.0.0.1:8080"),
        ("https://127.0.0.1", "127.0.0.1"),  # the same host over another scheme
        ("http://localhost", "127.0.0.1"),  # another allowed host is another site
        ("http://evil.example", "127.0.0.1"),
        ("http://127.0.0.1.evil.example", "127.0.0.1"),
        ("http://evil.example", "evil.example"),  # a host not in ALLOWED_HOSTS
        ("null", "127.0.0.1"),  # a sandboxed frame or a file
        ("http://127.0.0.1/chat", "127.0.0.1"),
        (None, "127.0.0.1"),  # browsers always send one
    ],
)
async def test_sockets_from_any_other_origin_are_refused(alice, origin, host):
    assert not await socket_opens(alice, origin, host)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "origin, host",
    [
        ("http://127.0.0.1", "127.0.0.1"),
        ("http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("http://127.0.0.1", "127.0.0.1:80"),  # default ports are the same origin
        ("http://LOCALHOST:8080", "localhost:8080"),
    ],
)
async def test_the_pages_own_origin_opens_a_socket(alice, origin, host):
    assert await socket_opens(alice, origin, host)


@pytest.mark.django_db(transaction=True)
async def test_csrf_trusted_origins_may_open_sockets_too(alice, settings):
    # Behind a proxy that passes on its own Host, the page's origin is a trusted one.
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com", "https://*.example.org"]
    assert await socket_opens(alice, "https://chat.example.com", "127.0.0.1:8080")
    assert await socket_opens(alice, "https://chat.example.com:443", "127.0.0.1:8080")
    assert await socket_opens(alice, "https://eu.example.org", "127.0.0.1:8080")
    assert not await socket_opens(alice, "http://chat.example.com", "127.0.0.1:8080")
    assert not await socket_opens(alice, "https://chat.example.com:8443", "127.0.0.1:8080")
    assert not await socket_opens(alice, "https://example.com", "127.0.0.1:8080")


@pytest.mark.django_db(transaction=True)
async def test_behind_an_https_proxy_the_socket_is_https_as_django_sees_it(alice, settings):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    # X-Forwarded-Proto counts only where the settings trust it (HTTPS=1).
    assert not await socket_opens(alice, "https://chat.example.com", "chat.example.com", x_forwarded_proto="https")
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert await socket_opens(alice, "https://chat.example.com", "chat.example.com", x_forwarded_proto="https")
    assert not await socket_opens(alice, "http://chat.example.com", "chat.example.com", x_forwarded_proto="https")
    assert await socket_opens(alice, "http://chat.example.com", "chat.example.com")


# --- a socket lives only as long as its session and its user's account ----------------


async def signed_in(user) -> Client:
    client = Client()
    await sync_to_async(client.force_login)(user)
    return client


async def socket_of(client: Client) -> WebsocketCommunicator:
    """A socket the page of this client's session opens."""
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1"), (b"cookie", cookie.encode())]
    return WebsocketCommunicator(application, "/ws/chat/", headers=headers)


async def open_socket_of(client: Client) -> WebsocketCommunicator:
    socket = await socket_of(client)
    assert (await socket.connect())[0]
    return socket


async def assert_signed_out(socket: WebsocketCommunicator) -> None:
    """The page is told, and the socket closes with a code nothing reconnects on."""
    assert "signed out" in await socket.receive_from(timeout=5)
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4001}


@pytest.mark.django_db(transaction=True)
async def test_logging_out_closes_that_sessions_sockets(alice):
    here, elsewhere = await signed_in(alice), await signed_in(alice)
    socket, other = await open_socket_of(here), await open_socket_of(elsewhere)
    await sync_to_async(here.post)("/accounts/logout/")
    await assert_signed_out(socket)
    assert not (await (await socket_of(here)).connect())[0]
    # Her other session (another device) is still signed in: its socket still works.
    await other.send_to(text_data=json.dumps({"action": "dance"}))
    assert "Unknown action" in await other.receive_from(timeout=5)
    await other.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("end", ["deactivate", "delete"])
async def test_deactivating_or_deleting_a_user_closes_all_her_sockets(alice, end):
    clients = [await signed_in(alice), await signed_in(alice)]
    sockets = [await open_socket_of(client) for client in clients]

    def deactivate():
        alice.is_active = False
        alice.save()

    await sync_to_async(deactivate if end == "deactivate" else alice.delete)()
    for client, socket in zip(clients, sockets, strict=True):
        await assert_signed_out(socket)
        assert not (await (await socket_of(client)).connect())[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("end", ["deactivated", "session-deleted", "password-changed"])
async def test_a_socket_action_is_refused_once_the_session_no_longer_signs_in(
    alice, db_models, shared_key_allowed, gateway_url, fake_gateway, end
):
    """Each action checks again: not every end of access sends a signal (a bulk update,
    sessions cleared in the database, a password changed elsewhere)."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.contrib.sessions.models import Session

    socket = await open_socket_of(await signed_in(alice))
    users = User.objects.filter(pk=alice.pk)
    await sync_to_async(
        {
            "deactivated": lambda: users.update(is_active=False),
            "session-deleted": lambda: Session.objects.all().delete(),
            "password-changed": lambda: users.update(password=make_password("a-new-passphrase-43")),
        }[end]
    )()
    frame = {"action": "send", "message": "Hi", "model": db_models["flash"].pk, "conversation": ""}
    await socket.send_to(text_data=json.dumps(frame))
    await assert_signed_out(socket)
    await no_generation_left()
    assert await sync_to_async(Message.objects.count)() == 0
    assert fake_gateway.requests == []


@pytest.mark.django_db
def test_every_page_has_a_policy_without_inline_script(client, alice):
    client.force_login(alice)
    for url in ["/", "/keys/", "/accounts/login/", "/accounts/signup/"]:
        policy = client.get(url)["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
        assert directives["script-src"] == "'self'", url
        assert "unsafe-inline" not in directives["script-src"] and "unsafe-eval" not in policy
        assert directives["frame-ancestors"] == "'none'"


def deploy_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "UPSTREAM_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="chatsite.settings",
        ENV_FILE="",
        DEBUG="0",
        HTTPS="1",
        SECRET_KEY=secrets.token_urlsafe(50),
        FIELD_ENCRYPTION_KEYS="dGVzdHMtb25seS10ZXN0cy1vbmx5LXRlc3RzLW9ubHk=",
        **extra,
    )
    return env


def test_the_deploy_check_reports_nothing_with_https(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=deploy_env(DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_cookies_are_secure_with_https(tmp_path):
    code = "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT)"
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=deploy_env(DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
    )
    assert result.stdout.split() == ["True", "True", "True"], result.stderr


@pytest.mark.django_db
def test_no_password_or_session_id_in_the_logs(client, caplog, db_models):
    caplog.set_level(logging.DEBUG)
    password = PASSWORD
    sign_up(client, "carol", password)
    client.logout()
    client.post("/accounts/login/", {"username": "carol", "password": "wrong-" + password})
    client.post("/accounts/login/", {"username": "carol", "password": password})
    session_id = client.cookies["sessionid"].value
    client.post("/keys/", {"label": "k", "value": SECRET})
    client.get("/c/999999/")  # a 404 is logged
    assert caplog.records  # something was logged...
    assert (
        password not in caplog.text and session_id not in caplog.text and SECRET not in caplog.text
    )  # ...none of these


@pytest.mark.django_db
def test_the_policy_lets_pages_load_images_from_the_site_only(client, alice):
    """Answers show no images but an answer's attachments (markdown images are links):
    no https image, tracking pixel or exfiltrating URL may load when a page opens."""
    client.force_login(alice)
    for url in ["/", "/keys/", "/usage/", "/accounts/login/"]:
        policy = client.get(url)["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
        assert directives["img-src"] == "'self' data:", url  # data: is the favicon
