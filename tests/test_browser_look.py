"""The look, in real headless Chromium (Playwright) against the app under Daphne and its
demo gateway: tables that fit a phone without splitting words, answer actions as labelled
icon buttons big enough to hit, block quotes with a bar, form controls styled in both
colour schemes."""

from __future__ import annotations

import os

import pytest

from tests.browser import ROOT, open_page, sign_up

# CHATSITE_SCREENSHOTS=docs writes the README's dark screenshot.
SHOTS = os.environ.get("CHATSITE_SCREENSHOTS")

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

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


def brightness(colour: str) -> float:
    """0 for black, 1 for white, from a computed "rgb(r, g, b)"."""
    red, green, blue = (int(part) for part in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


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


def test_answer_actions_are_labelled_icon_buttons_big_enough_to_hit(page, demo_app):
    from playwright.sync_api import expect

    sign_up(page, demo_app)
    ask(page, "Tell me something")
    main = page.get_by_role("main")
    main.get_by_role("button", name="Regenerate").click()
    expect(main.get_by_role("group", name="Version 2 of 2")).to_be_visible()
    expect(page.locator("#messages article.status-streaming")).to_have_count(0)

    buttons = main.locator(
        "#messages .actions button, .conversation-actions > *, #composer-buttons button, #sidebar-toggle"
    )
    names = []
    for button in buttons.all():
        name = button.evaluate("b => b.getAttribute('aria-label') || b.textContent.trim()")  # what a reader says
        names.append(name)
        assert name and button.get_attribute("title"), button.evaluate("b => b.outerHTML")
        assert button.locator("svg[aria-hidden=true]").count() >= 1, name  # drawn inline, hidden from readers
        if button.is_visible():
            box = button.bounding_box()
            assert box["width"] >= 32 and box["height"] >= 32, (name, box)
    assert {"Previous version", "Next version", "Copy", "Regenerate", "Edit", "Rename", "Send"} <= set(names)
    assert {"Export Markdown", "Export JSON", "Delete", "Conversations"} <= set(names)

    # The keyboard's focus is drawn as a ring.
    page.get_by_label("Message").focus()
    main.get_by_role("button", name="Copy", exact=True).focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    copy = main.get_by_role("button", name="Copy", exact=True)
    expect(copy).to_be_focused()
    ring = copy.evaluate("b => [getComputedStyle(b).outlineStyle, parseFloat(getComputedStyle(b).outlineWidth)]")
    assert ring[0] == "solid" and ring[1] >= 2

    # Copying says so in the button's name, and the button keeps its icon.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=demo_app.url)
    copy.click()
    copied = main.get_by_role("button", name="Copied")
    expect(copied).to_be_visible()
    assert copied.locator("svg").count() >= 1
    assert page.evaluate("navigator.clipboard.readText()").startswith("This answer comes from")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_block_quotes_have_a_bar_and_form_controls_are_styled(browser, demo_app, scheme):
    context, page, problems = open_page(browser, viewport=DESKTOP, color_scheme=scheme)
    sign_up(page, demo_app)
    ask(page, "A line to quote")  # the demo gateway quotes the question back
    if scheme == "dark" and SHOTS:  # the README's dark screenshot: the answer, at the bottom
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        page.mouse.move(0, 0)
        page.screenshot(path=ROOT / SHOTS / "dark.png")
    quote = page.locator("#messages .markdown blockquote").first
    bar = quote.evaluate("q => [getComputedStyle(q).borderLeftStyle, parseFloat(getComputedStyle(q).borderLeftWidth)]")
    assert bar[0] == "solid" and bar[1] >= 3

    page.get_by_text("Settings", exact=True).click()
    for field in (page.get_by_label("Model"), page.get_by_label("Temperature"), page.get_by_label("Message")):
        style = field.evaluate(
            "f => { const s = getComputedStyle(f); return {radius: parseFloat(s.borderTopLeftRadius), "
            "background: s.backgroundColor, height: f.getBoundingClientRect().height}; }"
        )
        assert style["radius"] >= 6 and style["height"] >= 32, style
        assert (brightness(style["background"]) < 0.3) == (scheme == "dark"), style  # the scheme's own field colour
    arrow = page.get_by_label("Model").evaluate(
        "s => [getComputedStyle(s).appearance, getComputedStyle(s).backgroundImage]"
    )
    assert arrow[0] == "none" and arrow[1].startswith('url("data:image/svg+xml'), (
        arrow
    )  # its own arrow, not the browser's
    accent = page.get_by_label("Enable thinking").evaluate("c => getComputedStyle(c).accentColor")
    assert accent not in ("auto", ""), accent
    context.close()
    assert not problems, problems
