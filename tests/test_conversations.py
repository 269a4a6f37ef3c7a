"""Managing conversations: rename, delete, the sidebar's pages, search."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations import search, sidebar
from conversations.models import Conversation, CostLog, Message

pytestmark = pytest.mark.django_db


def sidebar_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<li id="conversation-(\d+)"', html)]


# --- rename --------------------------------------------------------------------------------


def test_it_renames_a_conversation_inline(client, alice):
    conversation = Conversation.objects.create(user=alice, title="Old title")
    client.force_login(alice)
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert f'hx-get="/c/{conversation.pk}/rename/"' in page

    form = client.get(f"/c/{conversation.pk}/rename/", HTTP_HX_REQUEST="true").content.decode()
    assert 'name="title" value="Old title"' in form and f'hx-post="/c/{conversation.pk}/rename/"' in form

    response = client.post(
        f"/c/{conversation.pk}/rename/", {"title": "  A  <b>new</b>\ttitle "}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert '<h1 id="conversation-title">A &lt;b&gt;new&lt;/b&gt; title</h1>' in html
    # The tab's sidebar item is swapped too.
    assert f'<li id="conversation-{conversation.pk}" hx-swap-oob="true">' in html
    conversation.refresh_from_db()
    assert conversation.title == "A <b>new</b> title"

    cancel = client.get(f"/c/{conversation.pk}/heading/").content.decode()
    assert "A &lt;b&gt;new&lt;/b&gt; title" in cancel


@pytest.mark.parametrize(
    "title, message",
    [("   ", "Give the conversation a title."), ("x" * 201, "at most 200 characters long (this one has 201)")],
)
def test_it_says_why_a_title_is_refused(client, alice, title, message):
    conversation = Conversation.objects.create(user=alice, title="Kept")
    client.force_login(alice)
    response = client.post(f"/c/{conversation.pk}/rename/", {"title": title}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422 and message in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Kept"


# --- delete --------------------------------------------------------------------------------


def _paid_conversation(user, title="Paid for"):
    conversation = Conversation.objects.create(user=user, title=title)
    question = conversation.messages.create(role="user", content="Q")
    answer = conversation.messages.create(role="assistant", content="A", status="complete")
    CostLog.objects.create(
        user=user,
        conversation=conversation,
        message=answer,
        service_name="google-gemini",
        model_name="gemini-2.0-flash",
        total_tokens=10,
        cost_total=Decimal("0.0000158"),
    )
    return conversation, question, answer


def test_it_asks_before_deleting_then_keeps_the_ledger(client, alice):
    conversation, question, answer = _paid_conversation(alice)
    client.force_login(alice)
    confirm = client.get(f"/c/{conversation.pk}/delete/", HTTP_HX_REQUEST="true").content.decode()
    assert 'role="alertdialog"' in confirm and "Delete “Paid for”?" in confirm
    assert "Delete conversation</button>" in confirm and "stays in the usage and cost pages" in confirm
    page = client.get(f"/c/{conversation.pk}/delete/").content.decode()  # without htmx: a page
    assert "<html" in page and "Delete conversation</button>" in page
    assert Conversation.objects.filter(pk=conversation.pk).exists()  # asking deletes nothing

    response = client.post(f"/c/{conversation.pk}/delete/", HTTP_HX_REQUEST="true")
    assert response["HX-Redirect"] == "/"
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(pk__in=[question.pk, answer.pk]).exists()
    log = CostLog.objects.get()
    assert (log.conversation_id, log.message_id, log.cost_total) == (None, None, Decimal("0.0000158"))
    assert "Deleted “Paid for”." in client.get("/").content.decode()

    # Its cost shows as a deleted conversation on the Usage page and the staff dashboard.
    usage = client.get("/usage/").content.decode()
    assert "(deleted conversations)" in usage and "$0.0000158" in usage
    alice.is_staff = True
    alice.save()
    top = client.get("/dashboard/costs/top/", headers={"HX-Request": "true"}).content.decode()
    assert "(deleted conversations)" in top and "$0.0000158" in top


def test_it_refuses_to_delete_while_an_answer_is_generating(client, alice, settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"  # a fresh answer may belong to another process
    conversation = Conversation.objects.create(user=alice, title="Busy")
    conversation.messages.create(role="user", content="Q")
    conversation.messages.create(role="assistant", status="streaming")
    client.force_login(alice)
    assert "Stop it first" in client.get(f"/c/{conversation.pk}/delete/").content.decode()
    assert client.post(f"/c/{conversation.pk}/delete/").status_code == 409
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_bob_gets_404_on_renaming_deleting_exporting_and_paging_alices(client, alice, bob):
    conversation, question, answer = _paid_conversation(alice, "Alice's secret")
    client.force_login(bob)
    for method, url in [
        ("get", f"/c/{conversation.pk}/rename/"),
        ("post", f"/c/{conversation.pk}/rename/"),
        ("get", f"/c/{conversation.pk}/heading/"),
        ("get", f"/c/{conversation.pk}/delete/"),
        ("post", f"/c/{conversation.pk}/delete/"),
        ("post", f"/c/{conversation.pk}/settings/"),
        ("get", f"/c/{conversation.pk}/export.md"),
        ("get", f"/c/{conversation.pk}/export.json"),
        ("get", f"/c/{conversation.pk}/m/{answer.pk}/"),
        ("get", f"/c/{conversation.pk}/m/{question.pk}/edit/"),
        ("get", f"/c/{conversation.pk}/m/{answer.pk}/source/"),
    ]:
        response = getattr(client, method)(url, {"title": "Bob's now"} if method == "post" else None)
        assert response.status_code == 404, url
    conversation.refresh_from_db()
    assert conversation.title == "Alice's secret"
    assert Message.objects.count() == 2
    # Bob's pages and search never list it, where Alice's do (pages escape the apostrophe).
    shown = html.escape("Alice's secret")
    alices = Client()
    alices.force_login(alice)
    for url, query in [("/", None), ("/conversations/", None), ("/search/", {"q": "secret"})]:
        assert shown in alices.get(url, query).content.decode(), url
        assert shown not in client.get(url, query).content.decode(), url
    assert "conversation-" not in client.get("/search/", {"q": "Q"}).content.decode()


TOO_BIG = "99999999999999999999"  # 20 digits: beyond a 64-bit id


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", "/c/{big}/"),
        ("get", "/c/{big}/heading/"),
        ("get", "/c/{big}/rename/"),
        ("post", "/c/{big}/delete/"),
        ("post", "/c/{big}/settings/"),
        ("get", "/c/{big}/export.md"),
        ("get", "/c/{c}/m/{big}/"),
        ("get", "/c/{big}/m/{m}/"),
        ("get", "/c/{big}/m/{big}/"),
        ("get", "/c/{c}/m/{big}/edit/"),
        ("get", "/c/{big}/m/{m}/edit/"),
        ("get", "/c/{c}/m/{big}/source/"),
        ("get", "/attachments/{big}/"),
        ("post", "/keys/{big}/use/"),
        ("post", "/keys/{big}/replace/"),
        ("post", "/keys/{big}/delete/"),
    ],
)
@pytest.mark.parametrize("big", [TOO_BIG, str(2**63)])
def test_an_id_too_big_for_the_database_is_a_404(client, alice, method, url, big):
    conversation, question, _ = _paid_conversation(alice)
    client.force_login(alice)
    response = getattr(client, method)(url.format(big=big, c=conversation.pk, m=question.pk))
    assert response.status_code == 404


def test_copy_gets_a_message_as_written(client, alice):
    """An answer's Copy button fetches its markdown, as plain text no browser runs."""
    conversation = Conversation.objects.create(user=alice, title="T")
    answer = conversation.messages.create(role="assistant", content="**bold** <script>x</script>", status="complete")
    client.force_login(alice)
    response = client.get(f"/c/{conversation.pk}/m/{answer.pk}/source/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == "**bold** <script>x</script>"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response["X-Content-Type-Options"] == "nosniff"
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert f'data-source="/c/{conversation.pk}/m/{answer.pk}/source/"' in page


def test_the_largest_id_the_database_holds_is_still_an_id(client, alice):
    client.force_login(alice)
    assert client.get(f"/c/{2**63 - 1}/").status_code == 404  # looked up, not there
    conversation = _paid_conversation(alice)[0]
    assert client.get(f"/c/{conversation.pk}/").status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_a_page_that_connects_asks_how_its_marked_conversations_are(alice, bob):
    """A marker drawn at page load may be stale by the time the socket listens."""
    import json

    from asgiref.sync import sync_to_async

    from tests.chat import open_socket

    @sync_to_async
    def setup():
        done = _conversation(alice, "Ended meanwhile", "Q", "A")
        live = _conversation(alice, "Still going", "Q")
        live.messages.create(role="assistant", status="streaming")
        return done, live, _conversation(bob, "Bob's")

    done, live, bobs = await setup()
    socket = await open_socket(alice)
    await socket.send_to(text_data=json.dumps({"action": "sidebar", "conversations": [done.pk, live.pk, bobs.pk, "x"]}))
    frame = await socket.receive_from(timeout=5)
    await socket.disconnect()
    assert f'<li id="conversation-{done.pk}"><a' in frame and "Ended meanwhile</a></li>" in frame
    assert f'<li id="conversation-{live.pk}">' in frame and "generating-marker" in frame
    assert "Bob" not in frame and f"conversation-{bobs.pk}" not in frame


# --- the sidebar's pages --------------------------------------------------------------------


def _many(user, n, start=None):
    start = start or timezone.now()
    Conversation.objects.bulk_create(
        Conversation(user=user, title=f"Chat {i:04}", updated_at=start - timedelta(seconds=i)) for i in range(n)
    )


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_sidebar_stays_small_and_constant_with_5000_conversations(client, alice, bob, settings, db_models):
    client.force_login(alice)
    _many(alice, 60)
    open_one = Conversation.objects.filter(user=alice).last()
    for url in ("/", f"/c/{open_one.pk}/", "/conversations/"):
        client.get(url)  # first use creates the site settings row
    few = [_queries(client, "/"), _queries(client, f"/c/{open_one.pk}/"), _queries(client, "/conversations/")]

    _many(alice, 5000 - 60, start=timezone.now() - timedelta(days=1))
    _many(bob, 100)
    many = [_queries(client, "/"), _queries(client, f"/c/{open_one.pk}/"), _queries(client, "/conversations/")]
    assert many == few, (few, many)  # constant: nothing per conversation
    assert many[0] <= 15, many

    page = client.get("/").content.decode()
    first = sidebar_ids(page)
    assert len(first) == settings.SIDEBAR_PAGE_SIZE == 50
    assert 'hx-trigger="intersect once, click"' in page

    # Following the "load more" links reaches each of the 5,000 once, newest first.
    seen = list(first)
    next_page = re.search(r'hx-get="(/conversations/\?after=[^"]+)"', page).group(1)
    while next_page:
        html = client.get(next_page).content.decode()
        ids = sidebar_ids(html)
        assert 0 < len(ids) <= 50
        seen += ids
        found = re.search(r'hx-get="(/conversations/\?after=[^"]+)"', html)
        next_page = found.group(1) if found else None
    expected = list(Conversation.objects.filter(user=alice).order_by("-updated_at", "-id").values_list("pk", flat=True))
    assert seen == expected and len(seen) == 5000


def test_a_conversation_costs_the_same_queries_however_long_it_is(client, alice):
    conversation = _conversation(alice, "Short", "Q", "A")
    client.force_login(alice)
    client.get(f"/c/{conversation.pk}/")  # first use creates the site settings row
    short = _queries(client, f"/c/{conversation.pk}/")
    for i in range(40):
        conversation.messages.create(role="user" if i % 2 == 0 else "assistant", content=f"Turn {i}", status="complete")
    long = _queries(client, f"/c/{conversation.pk}/")
    assert long == short <= 17, (short, long)  # 17: the labels of the answers' models are one


def test_pages_are_keyset_pages_on_updated_at_and_id(alice):
    same = timezone.now()
    Conversation.objects.bulk_create(Conversation(user=alice, title=f"Tie {i}", updated_at=same) for i in range(120))
    first = sidebar.page(alice)
    assert len(first["conversations"]) == 50
    after = first["next_page"].split("after=")[1]
    second = sidebar.page(alice, after)
    assert [c.pk for c in second["conversations"]][0] == first["conversations"][-1].pk - 1
    third = sidebar.page(alice, second["next_page"].split("after=")[1])
    assert len(third["conversations"]) == 20 and third["next_page"] is None
    with pytest.raises(ValueError):
        sidebar.page(alice, "nonsense")


@pytest.mark.parametrize(
    "after",
    ["x", f"{10**20}_1", f"-{10**20}_1", f"1_{10**20}", f"1_{2**63}", "1_-1", "1e9_1", "_", "1__2"],
)
def test_a_bad_page_cursor_is_a_400(client, alice, after):
    client.force_login(alice)
    response = client.get("/conversations/", {"after": after})
    assert response.status_code == 400
    assert "That page of conversations does not exist." in response.content.decode()
    with pytest.raises(ValueError):
        sidebar.page(alice, after)


# --- search ------------------------------------------------------------------------------------


def _conversation(user, title, *texts, updated_ago=0):
    conversation = Conversation.objects.create(
        user=user, title=title, updated_at=timezone.now() - timedelta(minutes=updated_ago)
    )
    for i, text in enumerate(texts):
        role = "user" if i % 2 == 0 else "assistant"
        conversation.messages.create(role=role, content=text, status="complete")
    return conversation


def test_it_searches_titles_and_message_text(client, alice, bob):
    trip = _conversation(
        alice,
        "Trip to Lisbon",
        "Where should I eat?",
        "Try the pastéis de nata in Belém.",
        "common ground",
        updated_ago=5,
    )
    code = _conversation(
        alice,
        "Python help",
        "How do I sort a dict?",
        "Use sorted(d.items()) — <script>x</script>",
        "common ground",
        updated_ago=1,
    )
    _conversation(bob, "Bob's Lisbon trip", "Lisbon tips?")
    client.force_login(alice)

    def results(q):
        return client.get("/search/", {"q": q}, HTTP_HX_REQUEST="true").content.decode()

    html = results("lisbon")  # a title, any case
    assert f'href="/c/{trip.pk}/"' in html and "Bob" not in html
    html = results("PASTÉIS")  # message text, case-insensitive beyond ASCII
    assert f'href="/c/{trip.pk}/"' in html and f'href="/c/{code.pk}/"' not in html
    assert "<mark>pastéis</mark>" in html
    html = results("sorted(d")
    assert f'href="/c/{code.pk}/"' in html
    assert "&lt;script&gt;" in html and "<script>" not in html  # snippets are escaped
    assert "No conversations match “nothing-like-this”" in results("nothing-like-this")
    html = results("Py")  # two characters: titles only, and it says so
    assert f'href="/c/{code.pk}/"' in html and "at least 3 characters" in html
    assert 'id="search-results"' in results("") and "<li>" not in results("")

    # Newest first.
    both = results("common")
    assert both.index(f"/c/{code.pk}/") < both.index(f"/c/{trip.pk}/")


@pytest.mark.parametrize("query", ["\x00", "\x00\x00\x00", '"\x00"', "\x00\x7f\x1b"])
def test_search_ignores_control_characters(client, alice, query):
    _conversation(alice, "Red alert", "the red text")
    client.force_login(alice)
    response = client.get("/search/", {"q": query})
    assert response.status_code == 200
    assert "/c/" not in response.content.decode()


def test_search_reads_a_query_without_its_control_characters(client, alice):
    chat = _conversation(alice, "Red alert", "the red text")
    client.force_login(alice)
    page = client.get("/search/", {"q": "te\x00xt"}).content.decode()
    assert f'href="/c/{chat.pk}/"' in page and "<mark>text</mark>" in page
    assert search.clean_query("  a\x00b\tc\u200dd\x1b  ") == "ab c\u200dd"  # joiners (emoji) stay


def test_search_finds_every_version_but_not_an_answer_still_streaming(client, alice, settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"  # keep the streaming answer streaming
    conversation = _conversation(alice, "Versions", "Question")
    old = Message(
        conversation=conversation,
        parent=conversation.messages.get(),
        role="assistant",
        content="zebra crossing",
        status="complete",
    )
    old.save()
    new = Message(conversation=conversation, parent=old.parent, role="assistant", content="giraffe", status="complete")
    new.save()
    streaming = _conversation(alice, "Live")
    Message.objects.create(conversation=streaming, role="assistant", content="zebra in progress", status="streaming")
    client.force_login(alice)
    html = client.get("/search/", {"q": "zebra"}).content.decode()
    assert f"/c/{conversation.pk}/" in html and f"/c/{streaming.pk}/" not in html
    # Once it ends it is found (the index follows updates).
    Message.objects.filter(conversation=streaming).update(status="complete")
    assert f"/c/{streaming.pk}/" in client.get("/search/", {"q": "zebra"}).content.decode()
    # An edited text is found by its new words only; a deleted one not at all.
    Message.objects.filter(pk=old.pk).update(content="okapi")
    assert f"/c/{conversation.pk}/" not in client.get("/search/", {"q": "zebra crossing"}).content.decode()
    assert f"/c/{conversation.pk}/" in client.get("/search/", {"q": "okapi"}).content.decode()
    assert _indexed("okapi") == 1
    conversation.delete()
    assert f"/c/{conversation.pk}/" not in client.get("/search/", {"q": "okapi"}).content.decode()
    # The search joins the index to the messages, which hides text a deleted message
    # left in the index: the index itself must have let go of it.
    assert _indexed("okapi") == 0


def _indexed(text: str) -> int:
    """How many messages the full-text index holds with `text`. On PostgreSQL the index
    is part of the table and cannot go stale: the finished messages with it."""
    if connection.vendor != "sqlite":
        return Message.objects.filter(content__icontains=text).exclude(status="streaming").count()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {search.FTS_TABLE} WHERE {search.FTS_TABLE} MATCH %s", [f'"{text}"'])
        return cursor.fetchone()[0]


def test_search_uses_an_index_for_message_text(alice):
    """ "Index what you query": FTS5 on SQLite, the trigram GIN index on PostgreSQL."""
    _conversation(alice, "Indexed", "needle in a haystack")
    query = str(search._matching_messages(alice, "needle").values("id").query)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            triggers = {row[0] for row in cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
            assert {
                f"{search.FTS_TABLE}_insert",
                f"{search.FTS_TABLE}_update",
                f"{search.FTS_TABLE}_delete",
            } <= triggers
            sql, params = search._matching_messages(alice, "needle").values("id").query.sql_with_params()
            plan = " ".join(str(row) for row in cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "VIRTUAL TABLE INDEX" in plan, plan
        else:
            # The predicate the search runs (without the join to the user's conversations,
            # which a planner may start from on tables this small).
            matching = Message.objects.filter(content__icontains="needle").exclude(status=Message.Status.STREAMING)
            sql, params = matching.values("id").query.sql_with_params()
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert "message_content_trgm" in plan, plan
    assert "needle" in query
    assert [m.content for m in search._matching_messages(alice, "NEEDLE")] == ["needle in a haystack"]


# --- titles --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, title",
    [
        ("Why is the sky blue?", "Why is the sky blue?"),
        ("## A **bold** _idea_", "A bold idea"),
        ("# Title #", "Title"),
        ("- a list item with `code`", "a list item with code"),
        ("1. First step", "First step"),
        ("> quoted [a link](https://example.com) and ~~struck~~", "quoted a link and struck"),
        ("* [x] done\n* [ ] todo", "[x] done"),
        ("![a picture](https://example.com/x.png) here", "a picture here"),
        ("Use snake_case_names and 2*3*4", "Use snake_case_names and 2*3*4"),  # within words: no emphasis
        ("a**b**c and x~~y~~z", "a**b**c and x~~y~~z"),
        ("`a*b*c` stays as code", "a*b*c stays as code"),
        ("An escaped \\*star\\*", "An escaped *star*"),
        ("\n\n```python\nprint(1)\n```\nExplain", "print(1)"),
        ("---\nAfter a rule", "After a rule"),
        ("First line\nsecond line", "First line"),
        ("Tom &amp; Jerry <b>", "Tom & Jerry <b>"),
        ("**" + ("word " * 20).strip() + "**", ("word " * 12).rstrip() + "…"),
        ("```", "```"),  # nothing but syntax: kept as written
    ],
)
def test_a_title_from_the_first_message_drops_its_markdown(text, title):
    assert Conversation.title_from(text) == title
