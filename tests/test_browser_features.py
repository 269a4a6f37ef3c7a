"""The conversation features in real headless Chromium (Playwright), against the app under
Daphne: rename, search, export, delete, regenerate and edit with version switching,
copy, keyboard, an image answer, and screenshots at desktop and phone widths.

Screenshots go to a temporary folder (printed); set CHATSITE_SCREENSHOTS=docs to write
the README's (docs/desktop.png, docs/phone.png) instead.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from pathlib import Path

import pytest

from tests.browser import ROOT, add_key, open_page, sign_up
from tests.fakegateway import (
    Reply,
    Wait,
    chunk,
    final,
    generate_reply,
    image_item,
    sse,
    stream_reply,
)

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

ANSWER = (
    "Sunlight is scattered by the air's molecules, and **blue light** (short wavelengths) "
    "scatters about 5.5 times more than red:\n\n"
    "| colour | wavelength | scattering |\n|---|---|---|\n| blue | 450 nm | 5.5× |\n| red | 700 nm | 1× |\n\n"
    "```python\ndef rayleigh(wavelength_nm: float) -> float:\n    return (700 / wavelength_nm) ** 4\n```\n"
)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    target = os.environ.get("CHATSITE_SCREENSHOTS")
    folder = ROOT / target if target else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nScreenshots: {folder}")
    return folder


def _page(browser, app, **options):
    context, page, problems = open_page(browser, **options)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.url)
    return context, page, problems


@pytest.fixture
def page(browser, app):
    context, page, problems = _page(browser, app, viewport=DESKTOP)
    yield page
    context.close()
    assert not problems, problems


def ask(page, text, model=None):
    from playwright.sync_api import expect

    if model:
        page.get_by_label("Model").select_option(label=model)
    answers = page.locator("#messages article.assistant")
    before = answers.count()
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")
    expect(answers).to_have_count(before + 1)
    expect(page.locator("#messages article.status-streaming")).to_have_count(0)  # the answer has ended
    expect(page.get_by_role("button", name="Send")).to_be_visible()


def test_rename_search_export_and_delete(page, app, module_gateway):
    from playwright.sync_api import expect

    module_gateway.queue(
        stream_reply(["The sky is blue because of ", "Rayleigh scattering."]), stream_reply(["Other."])
    )
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    ask(page, "Why is the sky blue?")
    main = page.get_by_role("main")
    expect(main.locator("article .usage")).to_have_text("536 tokens · $0.000155")
    url = page.url

    # Rename inline: the heading turns into a field, Enter saves, the sidebar follows.
    page.get_by_role("button", name="Rename").click()
    title = page.get_by_label("Title")
    expect(title).to_be_focused()
    title.fill("Blue sky notes")
    title.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Blue sky notes")
    sidebar = page.get_by_role("navigation", name="Conversations")
    expect(sidebar.get_by_role("link", name="Blue sky notes")).to_be_visible()
    # A title can't be blank: the field says so and stays.
    page.get_by_role("button", name="Rename").click()
    page.get_by_label("Title").fill("   ")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert").filter(has_text="Give the conversation a title.")).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Blue sky notes")

    # A second conversation, then search as you type: message text, with the match marked.
    page.get_by_role("link", name="New chat").click()
    ask(page, "Something else")
    search = page.get_by_label("Search conversations")
    search.press_sequentially("rayleigh", delay=30)
    results = page.locator("#search-results")
    expect(results.get_by_role("link", name="Blue sky notes")).to_be_visible()
    expect(results.locator("mark")).to_have_text("Rayleigh")
    expect(results.get_by_role("link", name="Something else")).to_have_count(0)
    expect(page.locator("#conversation-list")).to_be_hidden()  # results replace the list
    search.fill("")
    search.press("Backspace")
    expect(page.locator("#conversation-list")).to_be_visible()
    search.fill("nothing like this")
    expect(results).to_contain_text("No conversations match")
    search.fill("blue sky")
    results.get_by_role("link", name="Blue sky notes").click()
    expect(page).to_have_url(url)

    # Export: both downloads, named for the conversation, with the footers and the total.
    with page.expect_download() as download:
        page.get_by_role("link", name="Export Markdown").click()
    markdown = Path(download.value.path()).read_text()
    assert re.fullmatch(r"chatsite-\d+-blue-sky-notes\.md", download.value.suggested_filename)
    assert "# Blue sky notes" in markdown and "The sky is blue because of Rayleigh scattering." in markdown
    assert "---\nTokens: 536\nCost: $0.0001554\n" in markdown
    assert "Conversation total: 536 tokens · $0.0001554" in markdown
    with page.expect_download() as download:
        page.get_by_role("link", name="Export JSON").click()
    document = json.loads(Path(download.value.path()).read_text())
    assert document["totals"]["cost"] == "0.0001554" and "sk_live" not in json.dumps(document)

    # Delete: asked first, then gone from the page and the sidebar.
    page.get_by_role("link", name="Delete").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("Delete “Blue sky notes”?")
    dialog.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Blue sky notes")
    page.get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete conversation").click()
    expect(page).to_have_url(app.url + "/")
    expect(page.get_by_role("status").filter(has_text="Deleted “Blue sky notes”.")).to_be_visible()
    expect(sidebar.get_by_role("link", name="Blue sky notes")).to_have_count(0)
    expect(sidebar.get_by_role("link", name="Something else")).to_be_visible()


def test_regenerate_edit_and_switch_versions_with_the_keyboard(page, app, module_gateway):
    from playwright.sync_api import expect

    module_gateway.queue(
        stream_reply(["First ", "version."]),
        stream_reply(["Second ", "version, with `code`:\n\n```python\nprint('hi')\n```\n"]),
        stream_reply(["After the first."]),
        stream_reply(["Answer to the edit."]),
    )
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    ask(page, "Tell me something")
    main = page.get_by_role("main")
    expect(main.locator(".answer").last).to_have_text("First version.")

    page.get_by_role("button", name="Regenerate").click()
    versions = main.get_by_role("group", name="Version 2 of 2")
    expect(versions).to_be_visible()
    expect(main.locator(".answer").last).to_contain_text("Second version")
    expect(main).not_to_contain_text("First version.")

    # Copy the answer and its code block (the Clipboard API, from chatsite.js).
    main.get_by_role("button", name="Copy code").click()
    expect(main.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')"
    main.get_by_role("button", name="Copy", exact=True).click()
    expect(main.locator("button[title='Copy the answer']")).to_have_accessible_name("Copied")  # its markdown came
    assert page.evaluate("navigator.clipboard.readText()").startswith("Second version, with `code`:")

    # Back to version 1, by keyboard: the focus stays on the switcher.
    versions.get_by_role("button", name="Previous version").focus()
    page.keyboard.press("Enter")
    expect(main.get_by_role("group", name="Version 1 of 2")).to_be_visible()
    expect(main.locator(".answer").last).to_have_text("First version.")
    expect(main.get_by_role("button", name="Next version")).to_be_focused()
    page.reload()
    expect(main.get_by_role("group", name="Version 1 of 2")).to_be_visible()  # remembered

    # The next turn follows the version shown.
    ask(page, "Go on")
    expect(main).to_contain_text("After the first.")
    history = module_gateway.requests[-1].json["history"]
    assert [turn["content"][0]["content"] for turn in history] == ["Tell me something", "First version."]

    # Edit the first question: a new version of it, answered afresh.
    main.locator("article.user").first.get_by_role("button", name="Edit").click()
    box = page.get_by_label("Edited question")
    expect(box).to_be_focused()
    box.fill("Tell me something else")
    page.get_by_role("button", name="Save and ask").click()
    expect(main).to_contain_text("Answer to the edit.")
    expect(main).not_to_contain_text("Go on")
    expect(main.locator("article.user").first.get_by_role("group", name="Version 2 of 2")).to_be_visible()
    request = module_gateway.requests[-1].json
    assert request["input"][0]["content"] == "Tell me something else" and "history" not in request


def test_escape_stops_and_the_new_chat_shortcut(page, app, module_gateway):
    from playwright.sync_api import expect

    never = threading.Event()
    module_gateway.queue(Reply(parts=[sse(chunk("Going on and on")), Wait(never, timeout=20), final()]))
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    page.get_by_label("Message").fill("Talk forever")
    page.get_by_label("Message").press("Enter")
    expect(page.get_by_role("main")).to_contain_text("Going on and on")
    page.keyboard.press("Escape")
    expect(page.get_by_role("main").locator(".status-note", has_text="Stopped.")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    page.keyboard.press("Control+Shift+O")
    expect(page).to_have_url(app.url + "/")
    expect(page.get_by_role("heading", level=1)).to_have_text("New chat")


PNG_SIZE = (96, 64)


def _picture() -> bytes:
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", PNG_SIZE, (35, 87, 214))
    ImageDraw.Draw(image).ellipse([24, 8, 72, 56], fill=(255, 214, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_an_image_answer_and_screenshots_at_desktop_and_phone_widths(browser, app, module_gateway, shots):
    from playwright.sync_api import expect

    module_gateway.queue(
        stream_reply(["Earlier chat."]),
        stream_reply(["Another one."]),
        stream_reply([ANSWER[:60], ANSWER[60:]], thinking=["Short wavelengths scatter more: ", "Rayleigh, 1/λ⁴."]),
        stream_reply(
            [ANSWER.replace("about 5.5 times", "about five times")],
            thinking=["Blue light scatters more ", "than red: Rayleigh, 1/λ⁴."],
            delay=0.4,
        ),
    )
    context, page, problems = _page(browser, app, viewport=DESKTOP)
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    ask(page, "Plan a trip to Lisbon")
    page.get_by_role("link", name="New chat").click()
    ask(page, "Sort a dict in Python")
    page.get_by_role("link", name="New chat").click()
    ask(page, "Why is the sky blue?", model="Gemini 3 Pro (thinking)")
    page.get_by_role("button", name="Regenerate").click()
    main = page.get_by_role("main")
    expect(main.get_by_role("group", name="Version 2 of 2")).to_be_visible()

    # An image model: a progress indicator while the gateway works, then the picture.
    module_gateway.queue(
        generate_reply(
            [
                image_item(base64.b64encode(_picture()).decode()),
                {"type": "text", "name": "output", "content": "A sun in a blue sky."},
            ],
            delay=1.5,
        )
    )
    ask_image = page.get_by_label("Message")
    page.get_by_label("Model").select_option(label="Gemini image")
    ask_image.fill("Draw the sun in a blue sky")
    ask_image.press("Enter")
    waiting = main.locator(".answer.streaming[aria-busy=true]")
    expect(waiting).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    image = main.get_by_role("img", name="Image generated by Gemini image")
    expect(image).to_be_visible(timeout=20_000)
    assert image.evaluate("img => img.naturalWidth") == PNG_SIZE[0]  # served, and decoded
    assert module_gateway.requests[-1].path == "/api/v1/generate"
    expect(main).to_contain_text("A sun in a blue sky.")

    page.get_by_label("Model").select_option(label="Gemini 3 Pro (thinking)")
    page.evaluate("window.scrollTo(0, 0)")
    page.mouse.move(0, 0)
    page.screenshot(path=shots / "desktop.png")

    # A phone: the sidebar hides behind "Conversations", which opens it over the chat.
    phone, phone_page, phone_problems = _page(
        browser, app, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    phone.add_cookies(context.cookies())
    phone_page.goto(page.url)
    sidebar = phone_page.get_by_role("navigation", name="Conversations")
    expect(sidebar).to_be_hidden()
    toggle = phone_page.get_by_role("button", name="Conversations")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(phone_page.get_by_role("main").get_by_role("img")).to_be_visible()
    phone_page.evaluate("window.scrollTo(0, 0)")
    phone_page.wait_for_timeout(300)
    phone_page.screenshot(path=shots / "phone.png")
    toggle.click()
    expect(sidebar).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(phone_page.get_by_label("Search conversations")).to_be_focused()
    phone_page.wait_for_timeout(300)
    phone_page.screenshot(path=shots / "phone-sidebar.png")
    phone_page.keyboard.press("Escape")
    expect(sidebar).to_be_hidden()
    expect(toggle).to_be_focused()
    # Nothing wider than the phone: no sideways scrolling.
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.close()
    context.close()
    for path in ("desktop.png", "phone.png", "phone-sidebar.png"):
        assert (shots / path).stat().st_size > 10_000
    assert not problems and not phone_problems, problems + phone_problems


def test_the_sidebar_loads_more_as_it_scrolls(page, app):
    from playwright.sync_api import expect

    username = sign_up(page, app)
    app.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from conversations.models import Conversation; "
        f"user = get_user_model().objects.get(username={username!r}); "
        "Conversation.objects.bulk_create(Conversation(user=user, title=f'Chat {i:03}') for i in range(120))",
    )
    page.reload()
    items = page.get_by_role("navigation", name="Conversations").locator("#conversation-list > li[id]")
    expect(items).to_have_count(50)
    for expected in (100, 120):
        page.locator(".load-more").scroll_into_view_if_needed()
        expect(items).to_have_count(expected)
    expect(page.locator(".load-more")).to_have_count(0)


# --- the page's rough edges --------------------------------------------------------------


def _at_bottom(page) -> bool:
    return page.evaluate("window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 2")


def test_send_goes_to_the_question_and_follows_the_answer_unless_scrolled_up(page, app, module_gateway):
    from playwright.sync_api import expect

    first, second = threading.Event(), threading.Event()
    lines = "".join(f"Line {i} of a long answer.\n\n" for i in range(60))
    module_gateway.queue(
        stream_reply([lines]),
        Reply(
            parts=[
                sse(chunk("Start.\n\n")),
                Wait(first),
                sse(chunk(lines.replace("Line", "More"))),
                Wait(second),
                sse(chunk(lines.replace("Line", "Last"))),
                final(),
            ]
        ),
    )
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    ask(page, "A long one, please")
    main = page.get_by_role("main")

    # Scrolled up to read, then Send: the view goes down to the question.
    page.evaluate("window.scrollTo(0, 0)")
    page.get_by_label("Message").fill("And another")
    page.get_by_label("Message").press("Enter")
    expect(main.locator("article.user").last).to_contain_text("And another")
    expect(main.locator("article.assistant").last).to_contain_text("Start.")
    expect(main.locator("article.user").last).to_be_in_viewport()
    jump = page.get_by_role("button", name="Jump to latest")
    expect(jump).to_be_hidden()

    # Scrolled up while it streams: the view stays, and a button offers the way back.
    page.evaluate("window.scrollTo(0, 0)")  # at once, where a wheel may still be gliding
    expect(jump).to_be_visible()
    scrolled = page.evaluate("window.scrollY")
    first.set()
    expect(main.locator("article.assistant").last).to_contain_text("More 59 of a long answer.")
    assert page.evaluate("window.scrollY") == scrolled

    # Back to the bottom: it follows again, to the end.
    jump.click()
    expect(jump).to_be_hidden()
    assert _at_bottom(page)
    second.set()
    expect(main.locator("article.status-streaming")).to_have_count(0)
    expect(main.locator("article.assistant").last).to_contain_text("Last 59 of a long answer.")
    assert _at_bottom(page)


def test_copy_takes_the_markdown_and_moves_nothing(page, app, module_gateway):
    from playwright.sync_api import expect

    module_gateway.queue(stream_reply(["Some **bold** words and `code`.\n\n- one\n- two\n"]))
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    ask(page, "Format something")
    main = page.get_by_role("main")
    expect(main.locator(".answer strong")).to_have_text("bold")
    page.evaluate("window.scrollTo(0, 0)")
    height = page.evaluate("document.documentElement.scrollHeight")
    sidebar = page.locator("#sidebar").bounding_box()

    main.get_by_role("button", name="Copy", exact=True).click()
    expect(main.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "Some **bold** words and `code`.\n\n- one\n- two\n"
    # The words said to screen readers take no room: the page and the sidebar stay put.
    expect(page.get_by_text("Copied to the clipboard.")).to_be_attached()
    assert page.evaluate("document.documentElement.scrollHeight") == height
    assert page.locator("#sidebar").bounding_box() == sidebar

    # Only its owner gets an answer's source.
    source = main.locator(".answer[data-source]").get_attribute("data-source")
    assert page.request.get(app.url + source).text() == "Some **bold** words and `code`.\n\n- one\n- two\n"
    context, other, problems = _page(page.context.browser, app, viewport=DESKTOP)
    sign_up(other, app)
    assert other.request.get(app.url + source).status == 404
    context.close()
    assert not problems, problems


def test_the_open_conversation_keeps_its_highlight_and_names_the_tab(page, app, module_gateway):
    from playwright.sync_api import expect

    module_gateway.queue(stream_reply(["First."]), stream_reply(["Second."]))
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    expect(page).to_have_title("chatsite")
    ask(page, "Tabs and titles")
    sidebar = page.get_by_role("navigation", name="Conversations")
    expect(sidebar.get_by_role("link", name="Tabs and titles")).to_have_attribute("aria-current", "page")
    expect(page).to_have_title("Tabs and titles · chatsite")
    ask(page, "And again")
    expect(sidebar.get_by_role("link", name="Tabs and titles")).to_have_attribute("aria-current", "page")
    expect(sidebar.locator("[aria-current]")).to_have_count(1)

    page.get_by_role("button", name="Rename").click()
    page.get_by_label("Title").fill("Renamed here")
    page.get_by_label("Title").press("Enter")
    expect(page).to_have_title("Renamed here · chatsite")
    expect(sidebar.get_by_role("link", name="Renamed here")).to_have_attribute("aria-current", "page")

    # Escape cancels a rename, and the focus goes back to Rename.
    page.get_by_role("button", name="Rename").click()
    page.get_by_label("Title").fill("Not this")
    page.get_by_label("Title").press("Escape")
    expect(page.get_by_role("heading", level=1)).to_have_text("Renamed here")
    expect(page.get_by_role("button", name="Rename")).to_be_focused()
    expect(page).to_have_title("Renamed here · chatsite")


def test_a_new_chat_starts_on_the_model_used_last(page, app, module_gateway):
    from playwright.sync_api import expect

    module_gateway.queue(stream_reply(["Thought about it."]))
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    model = page.get_by_label("Model")
    first = model.input_value()
    ask(page, "Think first", model="Gemini 3 Pro (thinking)")
    thinking = model.input_value()
    assert thinking != first
    page.get_by_role("link", name="New chat").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New chat")
    expect(model).to_have_value(thinking)


def test_a_long_question_collapses_behind_show_more(page, app, module_gateway):
    from playwright.sync_api import expect

    module_gateway.queue(stream_reply(["Short answer."]), stream_reply(["Another."]))
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    main = page.get_by_role("main")
    ask(page, "\n".join(f"Pasted line {i}" for i in range(40)))
    question = main.locator("article.user").first
    more = question.get_by_role("button", name="Show more")
    expect(more).to_have_attribute("aria-expanded", "false")
    text = question.locator(".user-text")
    assert text.bounding_box()["height"] < 300
    more.click()
    expect(question.get_by_role("button", name="Show less")).to_have_attribute("aria-expanded", "true")
    assert text.bounding_box()["height"] > 600
    page.reload()
    expect(main.locator("article.user").first.get_by_role("button", name="Show more")).to_be_visible()
    ask(page, "A short one")
    expect(main.locator("article.user").last.get_by_role("button", name="Show more")).to_have_count(0)


def test_a_paused_budget_says_so_once_beside_a_disabled_send(page, app, module_gateway):
    from playwright.sync_api import expect

    module_gateway.queue(stream_reply(["A dear answer."], final_kwargs={"cost_total": "0.25"}))
    username = sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    set_budget = (
        "from decimal import Decimal; from django.contrib.auth import get_user_model; "
        "from conversations.models import Budget; "
        f"user = get_user_model().objects.get(username={username!r}); "
    )
    app.manage("shell", "-c", set_budget + "Budget.objects.create(user=user, monthly_limit=Decimal('0.10'))")
    page.reload()
    send = page.get_by_role("button", name="Send")
    expect(send).to_be_enabled()
    ask(page, "Something dear")

    # The answer spent the budget: Send is off, and the reason is beside it, once.
    main = page.get_by_role("main")
    paused = main.get_by_text("new answers are paused until")
    expect(paused).to_have_count(1)
    expect(send).to_be_disabled()
    expect(send).to_have_accessible_description(re.compile("new answers are paused until"))
    expect(page.get_by_role("button", name="Regenerate")).to_be_disabled()
    send_box, reason_box = send.bounding_box(), paused.bounding_box()
    assert abs((send_box["y"] + send_box["height"] / 2) - (reason_box["y"] + reason_box["height"] / 2)) < 40
    frames = []
    page.on("websocket", lambda socket: socket.on("framesent", lambda frame: frames.append(frame)))
    page.reload()
    expect(send).to_be_disabled()
    expect(paused).to_have_count(1)
    page.get_by_label("Message").fill("Try anyway")
    page.get_by_label("Message").press("Enter")
    page.evaluate("1")
    assert [f for f in frames if '"send"' in str(f)] == []
    expect(page.get_by_label("Message")).to_have_value("Try anyway")
    expect(page.locator("#chat-error")).to_be_empty()

    # A raised budget: a reload sends again.
    app.manage("shell", "-c", set_budget + "Budget.objects.filter(user=user).update(monthly_limit=Decimal('5'))")
    page.reload()
    expect(send).to_be_enabled()
    expect(paused).to_have_count(0)


def test_on_a_phone_the_header_stays_in_reach(browser, app, module_gateway):
    from playwright.sync_api import expect

    lines = "".join(f"Line {i} of a long answer.\n\n" for i in range(60))
    module_gateway.queue(stream_reply([lines]))
    context, page, problems = _page(browser, app, viewport=DESKTOP)
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    phone, page, phone_problems = _page(browser, app, viewport=PHONE, is_mobile=True, has_touch=True)
    phone.add_cookies(context.cookies())
    page.goto(app.url + "/")
    ask(page, "A long one on a phone")
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    toggle = page.get_by_role("button", name="Conversations")
    expect(toggle).to_be_in_viewport()
    toggle.click()
    expect(page.get_by_role("navigation", name="Conversations")).to_be_visible()
    phone.close()
    context.close()
    assert not problems and not phone_problems, problems + phone_problems
