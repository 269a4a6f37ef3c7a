"""The cost pages in real headless Chromium (Playwright), against the app under Daphne."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

from tests.browser import sign_up


def money(text: str) -> Decimal:
    return Decimal(text.strip().removeprefix("$"))


def test_staff_see_the_chart_sort_the_tables_and_download_the_csv(page, demo_app):
    from playwright.sync_api import expect

    # The first account runs the site; the seeded users come after it.
    sign_up(page, demo_app, "admin")
    demo_app.manage("seed_costlog", "3000", "--random-seed", "3")

    page.get_by_role("link", name="Costs").click()
    expect(page.get_by_role("heading", name=re.compile("^Costs"))).to_be_visible()
    # The seeded rows span the last 90 days: "this month" holds few of them early in a
    # month, so the period is pinned to the one that holds them all, whatever the date.
    page.get_by_role("link", name="Last 90 days").click()
    expect(page.get_by_role("link", name="Last 90 days")).to_have_attribute("aria-current", "true")
    chart = page.get_by_role("img", name="Cost per day")
    expect(chart).to_be_visible()
    assert chart.bounding_box()["height"] > 150  # drawn, not just present
    assert chart.locator("rect").count() > 20
    by_user = page.locator("#by-user")
    expect(by_user.get_by_role("row")).to_have_count(21)  # the header and the top 20
    expect(page.locator("#by-model").get_by_role("row")).to_have_count(6)  # five models
    # The top conversations load after the page (htmx); expect() waits for them.
    top = page.locator("#top-conversations")
    expect(top.locator("tbody tr")).to_have_count(10)
    expect(page.locator("#top-conversations-to-load")).to_have_count(0)  # the placeholder gave way
    expect(top.get_by_role("link").first).to_have_attribute(
        "href", re.compile(r"^/admin/conversations/conversation/\d+/change/$")
    )
    total = money(page.locator("#total-cost .money").get_attribute("title"))  # the exact amount
    generations = int(page.locator("#generations").inner_text().replace(",", ""))
    no_cost = int(page.locator("#no-cost").inner_text().replace(",", ""))
    assert total > 0 and generations > 100 and no_cost > 0

    # Sorting by name swaps in the tables (htmx) and keeps the sort in the address bar.
    by_user.get_by_role("link", name="User", exact=True).click()
    expect(page).to_have_url(re.compile(r"users_sort=name"))
    expect(page.locator("#by-user th[aria-sort=ascending]")).to_have_text("User")
    names = page.locator("#by-user tbody th").all_inner_texts()
    assert names == sorted(names) and len(names) == 20
    expect(chart).to_be_visible()  # the rest of the page stayed
    expect(top.locator("tbody tr")).to_have_count(10)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Ledger rows").click()
    download = download_info.value
    assert re.fullmatch(r"costs-\d{4}-\d\d-\d\d-to-\d{4}-\d\d-\d\d-ledger\.csv", download.suggested_filename)
    with open(download.path(), newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == generations + no_cost  # the file has what the page counts
    priced = [r for r in rows if r["cost_total"]]
    assert len(priced) == generations
    assert {r["status"] for r in rows if not r["cost_total"]} <= {"stopped", "interrupted", "failed"}
    assert sum(Decimal(r["cost_total"]) for r in priced) == total  # exact, to the last digit
    assert {r["user"] for r in rows} <= {f"seed-user-{i:03}" for i in range(1, 101)}
    assert not any("E" in r["cost_total"] for r in rows)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="By model").click()
    text = open(download_info.value.path(), newline="").read()
    models = list(csv.DictReader(io.StringIO(text)))
    assert len(models) == 5 and sum(Decimal(r["cost_total"]) for r in models) == total


def test_a_user_sees_their_usage(page, demo_app):
    from playwright.sync_api import expect

    demo_app.manage("seed_costlog", "0")  # other accounts exist (seeded ones): this one is not the admin
    sign_up(page, demo_app, "someone")
    page.get_by_role("link", name="Usage").click()
    expect(page.get_by_role("heading", name="Usage")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("^This month"))).to_be_visible()
    expect(page.get_by_text("No answers with a reported cost in this period.").first).to_be_visible()
    expect(page.get_by_role("link", name="Costs")).to_have_count(0)  # not staff
    assert page.goto(demo_app.url + "/dashboard/costs/").status == 403
