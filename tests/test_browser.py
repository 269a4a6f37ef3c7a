"""The chat in real headless Chromium (Playwright), against the app under Daphne."""

from __future__ import annotations

import re
import threading

import pytest

from tests.browser import AppServer, add_key, sign_up
from tests.fakegateway import FakeGateway, Reply, Wait, chunk, final, sse, stream_reply


@pytest.fixture(scope="module")
def module_gateway():
    with FakeGateway() as gateway:
        yield gateway


@pytest.fixture(scope="module")
def app(tmp_path_factory, module_gateway):
    """The app pointed at the fake gateway."""
    server = AppServer(tmp_path_factory.mktemp("app"), module_gateway.base_url).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory):
    """The app as `make run` starts it: no UPSTREAM_BASE_URL, so the demo gateway answers."""
    server = AppServer(tmp_path_factory.mktemp("demo")).start()
    yield server
    server.stop()


def test_it_streams_thinking_and_answer_live_then_renders_them(page, app, module_gateway):
    from playwright.sync_api import expect

    release = threading.Event()
    module_gateway.queue(
        Reply(
            parts=[
                sse(chunk("Weighing **options** first.", "thinking")),
                sse(chunk("The answer *begins*")),
                Wait(release),
                sse(chunk(" and ends.")),
                final(input_tokens=24, output_tokens=512),
            ]
        ),
        stream_reply(["Second answer."]),
    )
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    main = page.get_by_role("main")
    page.get_by_label("Model").select_option(label="Gemini 3 Pro (thinking)")
    page.get_by_label("Message").fill("Why is the sky blue?")
    page.get_by_label("Message").press("Enter")

    # While the gateway holds the stream open, what arrived is already on the page.
    thinking = main.locator("details", has=page.locator("summary", has_text="Thinking"))
    expect(thinking).to_contain_text("Weighing **options** first.")
    expect(main).to_contain_text("The answer *begins*")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    expect(page.get_by_label("Message")).to_have_value("")
    assert not release.is_set()
    assert module_gateway.requests[-1].headers["x-api-key"] == "sk_live_0123456789abcdef"

    release.set()
    expect(page.get_by_text("536 tokens · $0.0001554", exact=True)).to_be_visible()
    expect(main.locator(".answer em")).to_have_text("begins")  # rendered markdown now
    expect(main).to_contain_text("The answer begins and ends.")
    expect(main.locator("summary", has_text=re.compile(r"Thinking · \d+\.\d s"))).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.get_by_role("navigation")).to_contain_text("Why is the sky blue?")

    # A reload shows everything stored, with the conversation's model still picked.
    url = page.url
    page.reload()
    expect(main).to_contain_text("Why is the sky blue?")
    expect(main).to_contain_text("The answer begins and ends.")
    expect(page.get_by_text("536 tokens · $0.0001554", exact=True)).to_be_visible()
    expect(page.get_by_label("Model")).to_have_value(
        page.get_by_label("Model").locator("option", has_text="Gemini 3 Pro (thinking)").get_attribute("value")
    )

    # The second turn goes to the same conversation and carries the first as history.
    page.get_by_label("Message").fill("And at sunset?")
    page.get_by_role("button", name="Send").click()
    expect(main).to_contain_text("Second answer.")
    assert page.url == url
    history = module_gateway.requests[-1].json["history"]
    assert [turn["role"] for turn in history] == ["user", "assistant"]
    assert history[1]["content"][0]["content"] == "The answer *begins* and ends."  # the markdown, as written


def test_shift_enter_adds_a_line_and_a_refused_message_stays_in_the_box(page, app, module_gateway):
    from playwright.sync_api import expect

    sign_up(page, app)
    requests_before = len(module_gateway.requests)
    box = page.get_by_label("Message")
    box.fill("   ")
    box.press("Enter")
    expect(page.get_by_role("alert").filter(has_text="Type a message first")).to_be_visible()

    box.fill("line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    expect(box).to_have_value("line one\nline two")
    assert len(module_gateway.requests) == requests_before  # nothing was sent


def test_it_works_out_of_the_box_with_the_demo_gateway(page, demo_app):
    from playwright.sync_api import expect

    sign_up(page, demo_app)
    main = page.get_by_role("main")
    expect(main).to_contain_text("demo gateway")
    page.get_by_label("Model").select_option(label="Gemini 3 Pro (thinking)")
    page.get_by_label("Message").fill("Hello demo")
    page.get_by_role("button", name="Send").click()
    expect(main.locator("summary", has_text=re.compile(r"Thinking · \d+\.\d s"))).to_be_visible()
    expect(main.locator("article .usage")).to_contain_text(re.compile(r"\d+ tokens · \$0\.0000\d+"))
    expect(main.locator(".answer code").first).to_be_visible()
    page.reload()
    expect(main).to_contain_text("Hello demo")
    # Its image model answers too, with a picture drawn for the prompt.
    page.get_by_label("Model").select_option(label="Gemini image")
    page.get_by_label("Message").fill("A lighthouse at dusk")
    page.get_by_role("button", name="Send").click()
    picture = main.get_by_role("img", name="Image generated by gemini-2.5-flash-image")
    expect(picture).to_be_visible()
    assert picture.evaluate("img => img.naturalWidth") == 384


def test_it_keeps_a_key_masked_and_deletes_it(page, app, module_gateway):
    from playwright.sync_api import expect

    sign_up(page, app)
    secret = "sk_test_9f8e7d6c5b4a3210ffee"
    add_key(page, app, "Work", secret)

    # Chat with it: the gateway gets the key, the browser never sees it again.
    module_gateway.queue(stream_reply(["Keyed answer."]))
    page.get_by_label("Message").fill("Hello with my key")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("main")).to_contain_text("Keyed answer.")
    assert module_gateway.requests[-1].headers["x-api-key"] == secret

    page.get_by_role("link", name="API keys").click()
    row = page.get_by_role("row", name=re.compile("Work"))
    expect(row).to_contain_text("sk_…ffee")
    expect(row).to_contain_text("In use")
    assert secret not in page.content()
    assert page.get_by_label("API key").input_value() == ""

    page.get_by_role("link", name="Delete Work").click()
    expect(page.get_by_role("heading")).to_contain_text("Delete “Work”?")
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_contain_text("Deleted “Work”")
    expect(page.get_by_role("row", name=re.compile("Work"))).to_have_count(0)

    # Without a key (and no shared key allowed), the chat asks for one.
    page.get_by_role("link", name="Chats").click()
    page.get_by_label("Message").fill("Anyone there?")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert").filter(has_text="Add your gateway API key")).to_be_visible()
    expect(page.get_by_label("Message")).to_have_value("Anyone there?")


XSS = [
    '<script>window.__xss = "script"</script>',
    '<img src=x onerror="window.__xss = \'img\'">',
    '<svg onload="window.__xss = \'svg\'"><circle r=1></circle></svg>',
    '<a id="evil-link" href="javascript:window.__xss=\'link\'">click me</a>',
    "[markdown link](javascript:window.__xss='md-link')",
    "![markdown image](javascript:window.__xss='md-img')",
    '<div hx-get="/keys/" hx-trigger="load" hx-target="body">htmx payload</div>',
    '<iframe src="javascript:window.__xss=\'iframe\'"></iframe>',
]


def test_an_xss_corpus_stays_inert(page, app, module_gateway):
    from playwright.sync_api import expect

    payload = " ".join(XSS)
    module_gateway.queue(
        stream_reply([payload, " END"], thinking=[payload], final_kwargs={"warnings": [payload]})
    )
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    page.get_by_label("Message").fill(payload)  # the title comes from this
    page.get_by_label("Message").press("Enter")
    main = page.get_by_role("main")
    expect(main.locator("article .usage")).to_be_visible()
    expect(main.locator(".warning")).to_contain_text("Gateway notice")
    for link in main.locator("a", has_text=re.compile("click me|markdown link")).all():
        link.click()
    page.reload()
    expect(main.locator("article .usage")).to_be_visible()
    for link in main.locator("a", has_text=re.compile("click me|markdown link")).all():
        link.click()
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None
    # The page's own htmx attributes (rename, search...) are fine; none from the payload.
    assert page.locator('[hx-get="/keys/"], [hx-trigger="load"], .markdown [hx-get], .markdown [hx-trigger]').count() == 0
    assert page.locator("script:not([src])").count() == 0
    expect(page.get_by_role("navigation", name="Conversations")).to_contain_text("<script>")  # shown as text
