"""The look, in real headless Chromium (Playwright) against the app under Daphne and its
demo gateway: tables that fit a phone without splitting words."""

from __future__ import annotations

import pytest

from tests.browser import open_page, sign_up

PHONE = {"width": 390, "height": 844}

# Every word of every table cell, and on how many lines it is drawn: a word on two lines
# was split. A break at a hyphen or a space is not inside a word.
SPLIT_WORDS = """() => {
  const split = [];
  for (const cell of document.querySelectorAll("main table th, main table td")) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const word of node.data.matchAll(/[\\p{L}\\p{N}.,$%]+/gu)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
        if (lines.size > 1) split.push(word[0]);
      }
    }
  }
  return split;
}"""


def ask(page, text, model=None):
    from playwright.sync_api import expect

    if model:
        page.get_by_label("Model").select_option(label=model)
    answers = page.locator("#messages article.assistant")
    before = answers.count()
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")
    expect(answers).to_have_count(before + 1)
    expect(page.locator("#messages article.status-streaming")).to_have_count(0)
    expect(page.get_by_role("button", name="Send")).to_be_visible()


@pytest.fixture
def phone(browser):
    context, page, problems = open_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    yield page
    context.close()
    assert not problems, problems


def staff(app, username):
    app.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.filter(username={username!r}).update(is_staff=True)",
    )


def test_usage_and_costs_tables_fit_a_phone_and_never_split_words(page, phone, demo_app):
    username = sign_up(page, demo_app)
    staff(demo_app, username)
    demo_app.manage("seed_costlog", "3000", "--random-seed", "3")
    ask(page, "Draw the sun", model="Gemini image")
    ask(page, "Why is the sky blue?", model="Gemini 3 Pro (thinking)")
    phone.context.add_cookies(page.context.cookies())

    page.goto(demo_app.url + "/usage/")
    assert "Gemini image" in page.locator("main table").first.inner_text()
    assert page.evaluate(SPLIT_WORDS) == []  # a desktop too

    phone.goto(demo_app.url + "/usage/")
    assert "Gemini image" in phone.locator("main table").first.inner_text()
    assert phone.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    assert phone.evaluate(SPLIT_WORDS) == []

    phone.goto(demo_app.url + "/dashboard/costs/")
    phone.get_by_role("link", name="Last 90 days").click()
    assert phone.locator("#by-user tbody tr").count() == 20
    assert phone.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    assert phone.evaluate(SPLIT_WORDS) == []
    # A table wider than the phone scrolls inside its own box.
    top = phone.locator("#top-conversations")
    box = top.evaluate("t => t.parentElement.getBoundingClientRect().width")
    assert box <= PHONE["width"]
    assert top.evaluate("t => getComputedStyle(t.parentElement).overflowX") == "auto"
