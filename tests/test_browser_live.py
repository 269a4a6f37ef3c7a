"""Live rendering in real Chromium: formatted while it streams, inert, and no jump at the end."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from tests.browser import add_key, sign_up
from tests.fakegateway import Reply, Wait, chunk, final, sse
from tests.test_browser import XSS

FORMATTED = [
    "Here is **bold** text.\n\n",
    "| model | price |\n|---|---|\n| flash | low |\n\n",
    "$$E = mc^2$$\n\n",
    "```python\nprint('hi')\n```\n\n",
    "And the last words",
]

# CHATSITE_SCREENSHOTS=docs writes the README's mid-stream and finished screenshots.
SHOTS = os.environ.get("CHATSITE_SCREENSHOTS")

# An answer's HTML without what adds no box (the live wrappers) and without the "Copy
# code" buttons the page adds to code blocks (on both sides, live and final).
CLEAN = """el => { const copy = el.cloneNode(true);
    copy.querySelectorAll('.copy-code').forEach(button => button.remove());
    copy.querySelectorAll('.code-block').forEach(block => block.replaceWith(...block.childNodes));
    return [...copy.querySelectorAll('.live-done, .live-open')].map(part => part.innerHTML).join('')
        + (copy.querySelector('.live-tail') ? copy.querySelector('.live-tail').textContent : copy.innerHTML); }"""


def test_an_answer_is_formatted_before_its_final_chunk_and_does_not_jump_at_the_end(page, app, module_gateway):
    from playwright.sync_api import expect

    release = threading.Event()
    module_gateway.queue(Reply(parts=[*(sse(chunk(p)) for p in FORMATTED), Wait(release), final()]))
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    page.get_by_label("Message").fill("Show me everything")
    page.get_by_label("Message").press("Enter")

    # The gateway holds back its final chunk: everything so far is formatted already.
    answer = page.locator(".answer.streaming")
    expect(answer.locator("strong")).to_have_text("bold")
    expect(answer.locator("table td").first).to_have_text("flash")
    expect(answer.locator("math")).to_be_visible()
    expect(answer.locator("pre.highlight")).to_be_visible()  # the closed fence, coloured
    expect(answer).to_contain_text("And the last words")
    page.wait_for_timeout(400)  # the open block's last render (LIVE_RENDER_INTERVAL)
    assert not release.is_set()
    if SHOTS:
        page.screenshot(path=Path(__file__).resolve().parent.parent / SHOTS / "streaming.png")
    streaming_html = answer.evaluate(CLEAN)
    streaming_height = answer.bounding_box()["height"]

    release.set()
    final_answer = page.locator("article.status-complete .answer")
    expect(final_answer).to_be_visible()
    # The final swap changes nothing visible: the same HTML (but the "Copy code" buttons
    # the page adds to finished answers), the same height.
    final_html = final_answer.evaluate(CLEAN)
    assert final_html.strip() == streaming_html.strip()
    assert abs(final_answer.bounding_box()["height"] - streaming_height) < 1
    if SHOTS:
        expect(page.locator("article.status-complete .usage")).to_be_visible()
        page.screenshot(path=Path(__file__).resolve().parent.parent / SHOTS / "answer.png")


def test_an_xss_corpus_stays_inert_while_it_streams(page, app, module_gateway):
    from playwright.sync_api import expect

    release = threading.Event()
    payload = " ".join(XSS)
    module_gateway.queue(
        Reply(
            parts=[
                sse(chunk(payload + "\n\n", "thinking")),
                sse(chunk(payload + "\n\n")),
                sse(chunk("- " + payload)),
                Wait(release),
                final(),
            ]
        )
    )
    sign_up(page, app)
    add_key(page, app, "Personal", "sk_live_0123456789abcdef")
    page.get_by_label("Message").fill("Payloads")
    page.get_by_label("Message").press("Enter")
    answer = page.locator(".answer.streaming")
    expect(answer.locator("li")).to_contain_text("htmx payload")  # the open block, formatted
    for link in answer.locator("a", has_text=re.compile("click me|markdown link")).all():
        link.click()
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None
    assert page.locator('.markdown [hx-get], .markdown [hx-trigger], [hx-get="/keys/"]').count() == 0
    assert page.locator("script:not([src])").count() == 0
    assert answer.locator("img, iframe, svg").count() == 0
    release.set()
    expect(page.locator("article.status-complete .answer")).to_be_visible()
    assert page.evaluate("window.__xss") is None
