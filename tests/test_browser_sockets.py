"""The chat socket's doors in real Chromium, against the app under Daphne: which pages
may open one with the user's cookie, and what a page does when its session ends."""

from __future__ import annotations

from tests.browser import sign_up

# Opens a socket from the page it runs in; resolves with "open" or how it closed.
OPEN_SOCKET = """url => new Promise(resolve => {
  const socket = new WebSocket(url);
  socket.onopen = () => { resolve("open"); socket.close(); };
  socket.onclose = event => resolve("closed " + event.code);
})"""


def test_a_page_from_another_port_of_the_host_cannot_open_a_socket_as_the_user(page, app, module_gateway):
    """Cookies ignore ports: a page of another service on the machine (here the gateway's)
    gets the user's cookie sent with a socket it opens; only the origin check refuses it."""
    sign_up(page, app)
    socket_url = app.url.replace("http://", "ws://") + "/ws/chat/"
    assert page.evaluate(OPEN_SOCKET, socket_url) == "open"  # from the site's own page

    page.goto(module_gateway.base_url + "/")  # any page of that origin will do (a 404 here)
    assert page.evaluate(OPEN_SOCKET, socket_url) == "closed 1006"  # refused at the handshake


def test_a_page_whose_session_ends_says_so_and_does_not_reconnect(page, app):
    from playwright.sync_api import expect

    sign_up(page, app)
    expect(page.locator("#offline")).to_be_hidden()
    # How the page's socket closes, and whether the page then shows "reconnecting" (it
    # does so in the same handler that schedules the reconnection).
    page.evaluate(
        """() => document.addEventListener("htmx:wsClose", event => setTimeout(() => {
          window.socketClosed = { code: event.detail.event.code, offline: !document.getElementById("offline").hidden };
        }))"""
    )
    other_tab = page.context.new_page()
    other_tab.goto(app.url + "/")
    other_tab.get_by_role("button", name="Log out").click()
    expect(other_tab.get_by_role("button", name="Log in")).to_be_visible()

    expect(page.locator("#chat-error")).to_contain_text("You have been signed out")
    page.wait_for_function("window.socketClosed !== undefined")
    assert page.evaluate("window.socketClosed") == {"code": 4001, "offline": False}
