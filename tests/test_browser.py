"""The chat in real headless Chromium (Playwright), against the app under Daphne."""

from __future__ import annotations

import re
import threading

from tests.browser import add_key, sign_up
from tests.fakegateway import Reply, Wait, chunk, final, sse, stream_reply


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

    # While the gateway holds the stream open, what arrived is already on the page, formatted.
    thinking = main.locator("details", has=page.locator("summary", has_text="Thinking"))
    expect(thinking).to_contain_text("Weighing options first.")
    expect(thinking.locator("strong")).to_have_text("options")
    expect(main.locator(".answer.streaming em")).to_have_text("begins")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    expect(page.get_by_label("Message")).to_have_value("")
    assert not release.is_set()
    assert module_gateway.requests[-1].headers["x-api-key"] == "sk_live_0123456789abcdef"

    release.set()
    expect(page.get_by_text("536 tokens · $0.000155", exact=True)).to_be_visible()  # for scanning
    expect(main.locator("article .usage .money")).to_have_attribute("title", "$0.0001554")  # every digit
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
    expect(page.get_by_text("536 tokens · $0.000155", exact=True)).to_be_visible()
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
    # The answer names its model as the picker does, with its id in the tooltip.
    meta = main.locator("article .meta")
    expect(meta).to_have_text("Gemini 3 Pro (thinking)")
    expect(meta).to_have_attribute("title", "google-gemini/gemini-3-pro-thinking-preview")
    page.reload()
    expect(main).to_contain_text("Hello demo")
    # Its image model answers too, with a picture drawn for the prompt.
    page.get_by_label("Model").select_option(label="Gemini image")
    page.get_by_label("Message").fill("A lighthouse at dusk")
    page.get_by_role("button", name="Send").click()
    picture = main.get_by_role("img", name="Image generated by Gemini image")
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
    "<img src=x onerror=\"window.__xss = 'img'\">",
    "<svg onload=\"window.__xss = 'svg'\"><circle r=1></circle></svg>",
    '<a id="evil-link" href="javascript:window.__xss=\'link\'">click me</a>',
    "[markdown link](javascript:window.__xss='md-link')",
    "![markdown image](javascript:window.__xss='md-img')",
    '<div hx-get="/keys/" hx-trigger="load" hx-target="body">htmx payload</div>',
    "<iframe src=\"javascript:window.__xss='iframe'\"></iframe>",
]


def test_an_xss_corpus_stays_inert(page, app, module_gateway):
    from playwright.sync_api import expect

    payload = " ".join(XSS)
    module_gateway.queue(stream_reply([payload, " END"], thinking=[payload], final_kwargs={"warnings": [payload]}))
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
    assert (
        page.locator('[hx-get="/keys/"], [hx-trigger="load"], .markdown [hx-get], .markdown [hx-trigger]').count() == 0
    )
    assert page.locator("script:not([src])").count() == 0
    expect(page.get_by_role("navigation", name="Conversations")).to_contain_text("<script>")  # shown as text


def test_an_answer_too_large_for_one_socket_message_is_shown_whole(page, app, module_gateway):
    """Its HTML is over Daphne's 1 MiB limit on a socket message: it loads over HTTP, and
    the page keeps its socket (it reconnected to the same refusal every second)."""
    from playwright.sync_api import expect

    answer = ("<&>" * 5 + "\n") * 20_000 + "END-OF-DUMP"
    module_gateway.queue(stream_reply([answer[i : i + 20_000] for i in range(0, len(answer), 20_000)], delay=0.05))
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    page.get_by_label("Message").fill("Dump it")
    page.get_by_label("Message").press("Enter")
    main = page.get_by_role("main")
    expect(main.locator("article.user")).to_contain_text("Dump it")  # the page's socket is open
    reconnects = []
    page.on("websocket", lambda socket: reconnects.append(socket.url))

    expect(main.get_by_text("536 tokens · $0.000155", exact=True)).to_be_visible()
    expect(main.locator("article.assistant .answer")).to_contain_text("END-OF-DUMP")
    expect(main.locator("article.assistant .answer")).to_contain_text("Too long to format")
    expect(page.get_by_role("button", name="Regenerate")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.url)
    main.get_by_role("button", name="Copy", exact=True).click()
    expect(main.locator("button[title='Copy the answer']")).to_have_accessible_name("Copied")  # fetched, written
    assert page.evaluate("navigator.clipboard.readText()") == answer  # the text, not the note

    # Switching back to it from a new version redraws the messages: they load over HTTP too.
    module_gateway.queue(stream_reply(["A short one."]))
    page.get_by_role("button", name="Regenerate").click()
    expect(main.locator("article.assistant .answer")).to_have_text("A short one.")
    page.get_by_role("button", name="Previous version").click()
    expect(main.get_by_role("group", name="Version 1 of 2")).to_be_visible()
    expect(main.locator("article.assistant .answer")).to_contain_text("END-OF-DUMP")
    expect(main.locator("article.user")).to_have_text(re.compile("Dump it"))
    assert reconnects == []


def test_images_in_answers_are_links_and_load_nothing(page, app, module_gateway):
    """No request leaves for an answer's image, on the page or elsewhere."""
    from playwright.sync_api import expect

    module_gateway.queue(
        stream_reply(
            [
                "A chart: ![chart](https://example.com/t.png?q=secret) and ![csv](/dashboard/costs/ledger.csv?to=9999-12-31)"
            ]
        )
    )
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.get_by_label("Message").fill("Show me a chart")
    page.get_by_label("Message").press("Enter")
    main = page.get_by_role("main")
    expect(main.locator("article .usage")).to_be_visible()
    page.reload()  # waits for the load event, so for any image of the page
    expect(main.locator("article .usage")).to_be_visible()
    assert [url for url in requested if "example.com" in url or "ledger.csv" in url] == []
    assert main.locator(".answer img").count() == 0
    expect(main.get_by_role("link", name="chart")).to_have_attribute("href", "https://example.com/t.png?q=secret")
    expect(main.get_by_role("link", name="csv")).to_have_attribute("href", "/dashboard/costs/ledger.csv?to=9999-12-31")


def test_the_page_stops_reconnecting_to_a_socket_that_keeps_failing(page, app, module_gateway):
    """A server that accepts the socket and then fails it (1011) had the page reconnect
    every second, for ever: it now tries a few times, waiting longer each time, then says
    so and offers a reload."""
    from playwright.sync_api import expect

    sign_up(page, app)
    opened = []

    def fail(socket):
        opened.append(socket.url)
        socket.close(code=1011, reason="Internal server error")

    page.clock.install()
    page.route_web_socket(re.compile(r"/ws/chat/"), fail)
    page.reload()
    gave_up = page.get_by_role("alert").filter(has_text="reload")
    for _ in range(60):  # a minute at a time, up to an hour of the page's time
        if gave_up.is_visible():
            break
        page.clock.run_for(60_000)
    expect(gave_up).to_be_visible()
    assert len(opened) == 1 + 10  # the page's socket, then ten tries
    page.clock.run_for(3_600_000)
    assert len(opened) == 11  # and none after that
    page.get_by_role("button", name="Reload").click()
    expect(page.get_by_label("Message")).to_be_visible()


def test_the_page_does_not_reconnect_once_signed_out(page, app, module_gateway):
    """Code 4001: the session ended (the server says so before closing); a new handshake
    would be refused."""
    from playwright.sync_api import expect

    sign_up(page, app)
    opened = []

    def sign_out(socket):
        opened.append(socket.url)
        socket.send('<div id="chat-error" role="alert"><p>You have been signed out.</p></div>')
        socket.close(code=4001, reason="Signed out")

    page.clock.install()
    page.route_web_socket(re.compile(r"/ws/chat/"), sign_out)
    page.reload()
    expect(page.get_by_role("alert").filter(has_text="signed out")).to_be_visible()
    page.clock.run_for(3_600_000)
    assert len(opened) == 1
    expect(page.locator("#offline")).to_be_hidden()


def test_latex_in_an_answer_is_drawn_as_mathml(page, app, module_gateway):
    """The server writes MathML; Chromium lays it out itself, with no script of ours."""
    from playwright.sync_api import expect

    module_gateway.queue(
        stream_reply(
            [
                "Euler: $e^{i\\pi} + 1 = 0$, and\n\n",
                "$$x^2 + \\frac{a}{b}$$\n\n",
                "costs $5 and $10.\n\n",
                "Smashed: $\\smash{\\begin{matrix} A \\\\ B \\\\ C \\\\ D \\\\ \\text{SPOOF} \\end{matrix}}$ (no height).",
            ]
        )
    )
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    page.get_by_label("Message").fill("Some maths")
    page.get_by_label("Message").press("Enter")
    answer = page.get_by_role("main").locator("article.assistant .answer")
    expect(page.get_by_role("main").locator("article .usage")).to_be_visible()

    inline, display, smashed = answer.locator("math").all()
    expect(display).to_be_visible()
    assert display.evaluate("m => m.namespaceURI") == "http://www.w3.org/1998/Math/MathML"
    assert display.get_attribute("display") == "block"
    fraction = display.locator("mfrac").bounding_box()
    letter = inline.locator("mi").first.bounding_box()
    assert fraction and letter and fraction["width"] > 0
    assert fraction["height"] > 1.5 * letter["height"]  # laid out as a fraction, not a line of text
    assert display.bounding_box()["y"] > inline.bounding_box()["y"] + letter["height"]  # set apart, below
    expect(answer).to_contain_text("costs $5 and $10.")

    # A formula draws nothing outside its box: \smash (no height) can't write over the page.
    spoof = smashed.locator("mtext", has_text="SPOOF")
    box, spoof_box = smashed.bounding_box(), spoof.bounding_box()
    assert spoof_box["y"] > box["y"] + box["height"]  # laid out below the formula's box...
    x, y = spoof_box["x"] + spoof_box["width"] / 2, spoof_box["y"] + spoof_box["height"] / 2
    drawn_there = "(e, [x, y]) => document.elementsFromPoint(x, y).some(hit => e.contains(hit))"
    assert not spoof.evaluate(drawn_there, [x, y])  # ...but not drawn there
