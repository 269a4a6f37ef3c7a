"""Two Daphne processes on one PostgreSQL and one Redis behave as one app.

A stream started through process A is watched live from a page on process B, resumed
after a reload on B with no chunk lost or repeated, and stopped from B. Runs on the
PostgreSQL + Redis pass of `make test` (tests/scaleout.py); skipped on the SQLite pass,
where the in-memory channel layer cannot reach another process.
"""

from __future__ import annotations

import os
import re
import threading

import pytest

from tests.browser import AppServer, add_key, log_in, sign_up
from tests.fakegateway import Reply, Wait, chunk, final, sse

pytestmark = pytest.mark.skipif(
    not (os.environ.get("REDIS_URL") and os.environ.get("DATABASE_URL", "").startswith("postgres")),
    reason="needs PostgreSQL and Redis (the second pass of make test)",
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory, module_gateway):
    a = AppServer(tmp_path_factory.mktemp("a"), module_gateway.base_url).start()
    b = AppServer(tmp_path_factory.mktemp("b"), module_gateway.base_url, share_with=a).start(migrate=False)
    yield a, b
    b.stop()
    a.stop()


def test_a_stream_started_on_one_process_is_watched_resumed_and_stopped_on_another(browser, servers, module_gateway):
    from playwright.sync_api import expect

    a, b = servers
    second, third = threading.Event(), threading.Event()
    never = threading.Event()
    module_gateway.queue(
        Reply(
            parts=[
                sse(chunk("alpha ")),
                Wait(second),
                sse(chunk("beta ")),
                Wait(third),
                sse(chunk("gamma ")),
                Wait(never, timeout=60),
                final(),
            ]
        )
    )
    page_a = browser.new_context().new_page()
    page_b = browser.new_context().new_page()
    for page in (page_a, page_b):
        page.set_default_timeout(15_000)

    username = sign_up(page_a, a)
    add_key(page_a, a, "Personal", "sk_live_crossprocess_0123456789")
    page_a.get_by_label("Message").fill("Count in Greek")
    page_a.get_by_label("Message").press("Enter")
    answer_a = page_a.locator(".answer.streaming")
    expect(answer_a).to_have_text("alpha ")
    expect(page_a).to_have_url(re.compile(r"/c/\d+/$"))
    conversation_path = page_a.url.removeprefix(a.url)

    # Process B: the same conversation, live, from the text so far.
    log_in(page_b, b, username)
    page_b.goto(b.url + conversation_path)
    answer_b = page_b.locator(".answer.streaming")
    expect(answer_b).to_have_text("alpha ")
    second.set()
    expect(answer_b).to_have_text("alpha beta ")
    expect(answer_a).to_have_text("alpha beta ")

    # A reload on B resumes: nothing lost, nothing repeated.
    page_b.reload()
    expect(answer_b).to_have_text("alpha beta ")
    third.set()
    expect(answer_b).to_have_text("alpha beta gamma ")
    expect(answer_a).to_have_text("alpha beta gamma ")

    # Stop from B ends the request that process A holds.
    page_b.get_by_role("button", name="Stop").click()
    assert module_gateway.closed.wait(10), "the gateway request was not closed"
    for page in (page_a, page_b):
        expect(page.get_by_role("main")).to_contain_text("Stopped.")
        expect(page.get_by_role("button", name="Send")).to_be_visible()
    page_a.reload()
    expect(page_a.locator("article.status-stopped .answer")).to_have_text(re.compile(r"^\s*alpha beta gamma\s*$"))


def test_parallel_sockets_on_both_processes_cannot_pass_the_concurrency_limit(browser, servers, module_gateway):
    """Admission holds a lock on the user's row: ten sockets, five on each process, all
    sending at once, start only as many answers as the limit allows (2 by default)."""
    import asyncio
    import json

    import websockets

    a, b = servers
    release = threading.Event()
    module_gateway.queue(*(Reply(parts=[sse(chunk("Busy")), Wait(release, timeout=30), final()]) for _ in range(10)))
    page = browser.new_context().new_page()
    page.set_default_timeout(15_000)
    sign_up(page, a)
    add_key(page, a, "Personal", "sk_live_parallel_0123456789")
    model = page.get_by_label("Model").input_value()
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())

    async def answer(socket) -> str:
        """The frame that answers a send (sidebar updates of the other chats may come first)."""
        while True:
            frame = str(await asyncio.wait_for(socket.recv(), 15))
            if 'id="chat-error"' in frame or 'id="conversation-field"' in frame:
                return frame

    async def send_everywhere() -> list[str]:
        sockets = [
            await websockets.connect(
                server.url.replace("http", "ws") + "/ws/chat/",
                origin=server.url,
                additional_headers={"Cookie": cookie},
            )
            for server in (a, b) * 5
        ]
        frame = {"action": "send", "message": "Hello", "model": model, "conversation": ""}
        await asyncio.gather(*(s.send(json.dumps(frame)) for s in sockets))
        replies = await asyncio.gather(*(answer(s) for s in sockets))
        release.set()
        for s in sockets:
            await s.close()
        return [str(r) for r in replies]

    replies: list[str] = []
    thread = threading.Thread(target=lambda: replies.extend(asyncio.run(send_everywhere())))
    thread.start()  # Playwright's sync API owns this thread's event loop
    thread.join(60)
    assert len(replies) == 10
    refused = [r for r in replies if "the limit is 2" in r]
    assert len(refused) == 8, replies
