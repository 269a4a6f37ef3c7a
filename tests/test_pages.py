"""Pages: sign-up and log-in, the chat page, who may see what."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import include, path

from conversations.models import Conversation, CostLog, Message
from tests.accounts import sign_up

pytestmark = pytest.mark.django_db

User = get_user_model()


def test_it_makes_the_first_account_the_admin(client):
    response = sign_up(client, "alice")
    assert response.status_code == 302 and response.url == "/"
    alice = User.objects.get(username="alice")
    assert alice.is_superuser and alice.is_staff

    client.logout()
    sign_up(client, "bob")
    bob = User.objects.get(username="bob")
    assert not bob.is_superuser and not bob.is_staff


def test_it_logs_the_new_user_in(client):
    sign_up(client, "alice")
    response = client.get("/")
    assert response.status_code == 200
    assert b"New chat" in response.content


def test_it_shows_the_form_again_on_bad_input(client):
    response = client.post("/accounts/signup/", {"username": "alice", "password1": "x", "password2": "y"})
    assert response.status_code == 200
    assert b"didn\xe2\x80\x99t match" in response.content or b"match" in response.content
    assert not User.objects.exists()


def test_it_closes_signup(client, settings):
    settings.ALLOW_SIGNUP = False
    assert client.get("/accounts/signup/").status_code == 403
    response = sign_up(client, "mallory")
    assert response.status_code == 403
    assert b"Sign-up is closed" in response.content
    assert not User.objects.exists()


def test_it_uses_plain_field_labels(client):
    page = client.get("/accounts/signup/").content.decode()
    assert ">Username</label>" in page and ">Password</label>" in page
    assert ">Password confirmation</label>" in page
    page = client.get("/accounts/login/").content.decode()
    assert ">Username</label>" in page and ">Password</label>" in page


def test_it_sends_visitors_to_log_in(client):
    response = client.get("/")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_it_shows_the_chat_page_with_models_and_the_demo_notice(client, alice, settings, db_models):
    settings.DEMO_GATEWAY = True
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert 'ws-connect="/ws/chat/"' in page
    assert "Gemini 2.0 Flash" in page and "Gemini 3 Pro (thinking)" in page
    assert "Gemini image" in page  # image models answer through /generate
    db_models["image"].enabled = False
    db_models["image"].save()
    assert "Gemini image" not in client.get("/").content.decode()  # a disabled model is not offered
    assert "demo gateway" in page
    assert '<label for="message-input"' in page and ">Message</label>" in page
    assert '<label for="model-select">Model</label>' in page

    settings.DEMO_GATEWAY = False
    assert "demo gateway" not in client.get("/").content.decode()


def _conversation_with_answer(user, model, content="**Bold** answer"):
    conversation = Conversation.objects.create(user=user, title="About bold", model=model)
    conversation.messages.create(role="user", content="Make it bold")
    answer = conversation.messages.create(
        role="assistant",
        content=content,
        thinking="Hmm, bold.",
        thinking_seconds=2.5,
        status="complete",
        model_name=model.model_name,
    )
    CostLog.objects.create(
        user=user,
        conversation=conversation,
        message=answer,
        service_name=model.service_name,
        model_name=model.model_name,
        input_tokens=3,
        output_tokens=5,
        total_tokens=8,
        cost_total=Decimal("0.0000158"),
    )
    return conversation


def test_it_shows_a_stored_conversation(client, alice, db_models):
    conversation = _conversation_with_answer(alice, db_models["thinker"])
    client.force_login(alice)
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert f'ws-connect="/ws/chat/{conversation.pk}/"' in page
    assert "<strong>Bold</strong> answer" in page
    assert "Thinking · 2.5 s" in page and "Hmm, bold." in page
    assert '8 tokens · <span class="money" title="$0.0000158">$0.0000158</span>' in page
    # The picker keeps the conversation's model.
    assert f'<option value="{db_models["thinker"].pk}" selected>' in page


def test_it_lists_conversations_newest_first(client, alice, db_models):
    from datetime import timedelta

    from django.utils import timezone

    old = Conversation.objects.create(user=alice, title="Old one", updated_at=timezone.now() - timedelta(days=1))
    new = Conversation.objects.create(user=alice, title="New one")
    client.force_login(alice)
    page = client.get(f"/c/{old.pk}/").content.decode()
    sidebar = page[page.index('<ul id="conversation-list">') :]
    assert sidebar.index("New one") < sidebar.index("Old one")
    assert f'href="/c/{new.pk}/"' in page


def test_bob_gets_404_for_alices_conversation(client, alice, bob, db_models):
    conversation = _conversation_with_answer(alice, db_models["flash"])
    client.force_login(bob)
    assert client.get(f"/c/{conversation.pk}/").status_code == 404
    page = client.get("/").content.decode()
    assert "About bold" not in page


def test_it_renders_answers_inert(client, alice, db_models):
    payload = (
        "<script>alert(1)</script> <img src=x onerror=alert(2)> [click](javascript:alert(3)) "
        '<div hx-get="/admin/" hx-trigger="load">x</div>'
    )
    conversation = _conversation_with_answer(alice, db_models["flash"], content=payload)
    Message.objects.filter(role="assistant").update(thinking=payload, warnings=[payload])
    Conversation.objects.filter(pk=conversation.pk).update(title=payload)
    client.force_login(alice)
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert "<script>alert(1)" not in page
    assert "<img src=x onerror" not in page and "onerror=alert(2)>" not in page
    assert 'href="javascript:' not in page
    assert '<div hx-get="/admin/"' not in page
    assert "hx-disable" in page


def test_it_shows_an_answer_too_long_to_format_as_plain_text(client, alice, db_models):
    """A 600 KB table took seconds to format while every other page waited: the page
    shows such an answer (and its thinking) as their text, escaped, and says why."""
    row = "| " + " | ".join(f"<cell {i}>" for i in range(8)) + " |\n"
    table = "| a | b | c | d | e | f | g | h |\n" + "|---" * 8 + "|\n" + row * (600_000 // len(row))
    conversation = _conversation_with_answer(alice, db_models["thinker"], content=table)
    Message.objects.filter(role="assistant").update(thinking=table)
    client.force_login(alice)
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert page.count("Too long to format") == 2 and "<table" not in page
    assert "| &lt;cell 0&gt; | &lt;cell 1&gt; |" in page and "<cell 0>" not in page
    # The rest of the answer as ever.
    assert '8 tokens · <span class="money" title="$0.0000158">$0.0000158</span>' in page


# --- caching -------------------------------------------------------------------------------


def test_signed_in_pages_are_never_stored(client, alice, db_models):
    chat = _conversation_with_answer(alice, db_models["thinker"])
    staff = User.objects.create_user("staff", password="password-of-staff", is_staff=True)
    client.force_login(alice)
    for url in [
        "/",
        f"/c/{chat.pk}/",
        "/conversations/",
        "/search/?q=Bold",
        "/keys/",
        "/usage/",
        f"/c/{chat.pk}/export.md",
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Cache-Control"] == "no-store", url
    client.force_login(staff)
    response = client.get("/dashboard/costs/ledger.csv")  # streamed
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"


def test_pages_for_visitors_may_be_stored(client):
    response = client.get("/accounts/signup/")
    assert response.status_code == 200 and "no-store" not in response.get("Cache-Control", "")


# --- error pages ---------------------------------------------------------------------------


def _boom(request):
    raise RuntimeError("a bug")


# For the 500 test (pytest.mark.urls): the site's URLs and one view that fails.
urlpatterns = [path("boom/", _boom), path("", include("chatsite.urls"))]


def _styled_with_a_way_back(page: str, heading: str) -> None:
    assert f"<h1>{heading}</h1>" in page
    assert '<link rel="stylesheet" href="/static/chatsite.css">' in page
    assert '<a href="/">Back to your chats</a>' in page


def test_a_missing_page_is_styled_with_a_way_back(client, alice, settings):
    settings.DEBUG = False
    client.force_login(alice)
    response = client.get("/c/999999/")
    assert response.status_code == 404
    _styled_with_a_way_back(response.content.decode(), "Page not found")


def test_a_forbidden_page_is_styled_with_a_way_back(client, alice, settings):
    settings.DEBUG = False
    client.force_login(alice)  # not staff
    response = client.get("/dashboard/costs/")
    assert response.status_code == 403
    _styled_with_a_way_back(response.content.decode(), "Not allowed")


@pytest.mark.urls("tests.test_pages")
def test_a_server_error_is_styled_with_a_way_back(client, alice, settings):
    """Django renders 500.html with no context at all (no request, no context processors)."""
    settings.DEBUG = False
    client.raise_request_exception = False
    client.force_login(alice)
    response = client.get("/boom/")
    assert response.status_code == 500
    page = response.content.decode()
    _styled_with_a_way_back(page, "Something went wrong")
    assert "a bug" not in page and "RuntimeError" not in page


# --- model names -------------------------------------------------------------------------


def _answer_by(conversation, service_name, model_name, content="An answer"):
    conversation.messages.create(role="user", content="A question")
    return conversation.messages.create(
        role="assistant", content=content, status="complete", service_name=service_name, model_name=model_name
    )


def test_an_answer_shows_its_models_label_with_the_id_in_a_tooltip(client, alice, db_models):
    conversation = Conversation.objects.create(user=alice, title="Models")
    _answer_by(conversation, "google-gemini", "gemini-3-pro-thinking-preview")
    _answer_by(conversation, "openai", "gpt-4o-mini")  # no longer in the catalogue: its id
    client.force_login(alice)
    page = client.get(conversation.get_absolute_url()).content.decode()
    assert '<div class="meta" title="google-gemini/gemini-3-pro-thinking-preview">Gemini 3 Pro (thinking)</div>' in page
    assert '<div class="meta" title="openai/gpt-4o-mini">gpt-4o-mini</div>' in page


def test_the_labels_cost_one_query_however_many_answers(client, alice, db_models):
    conversation = Conversation.objects.create(user=alice, title="Models")
    _answer_by(conversation, "google-gemini", "gemini-2.0-flash")
    client.force_login(alice)
    client.get(conversation.get_absolute_url())  # first use creates the site settings row
    with CaptureQueriesContext(connection) as one:
        client.get(conversation.get_absolute_url())
    for model in ("gemini-3-pro-thinking-preview", "gemini-2.5-flash-image", "gemini-2.0-flash") * 3:
        _answer_by(conversation, "google-gemini", model)
    with CaptureQueriesContext(connection) as many:
        page = client.get(conversation.get_absolute_url()).content.decode()
    assert page.count('<div class="meta" title="google-gemini/') == 10
    assert len(many) == len(one), [q["sql"] for q in many]
    assert sum("conversations_gatewaymodel" in q["sql"] for q in many) == 2  # the picker's and the labels


def test_the_socket_shows_the_label_too(alice, db_models):
    from conversations.relay import fragments

    conversation = Conversation.objects.create(user=alice, title="Models")
    answer = _answer_by(conversation, "google-gemini", "gemini-3-pro-thinking-preview")
    assert "Gemini 3 Pro (thinking)</div>" in fragments.done_for(answer.pk)
    # A new answer is drawn from its model's id alone (its service is not at hand there).
    question = conversation.messages.create(role="user", content="Again")
    turn = fragments.turn_for(question, answer.pk + 100, "gemini-3-pro-thinking-preview")
    assert '<div class="meta" title="gemini-3-pro-thinking-preview">Gemini 3 Pro (thinking)</div>' in turn
