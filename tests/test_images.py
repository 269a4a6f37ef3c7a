"""Image models: POST /generate through the same generation task as a stream, images
checked by their bytes and stored as files served to their owner only."""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
from decimal import Decimal

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.files.storage import default_storage
from django.test import Client

from conversations import gateway, images
from conversations.gateway.whole import _generated
from conversations.models import Attachment, Conversation, CostLog, Message
from tests.chat import (
    db,
    frames_until,
    no_generation_left,
    open_socket,
    send,
    until_done,
)
from tests.fakegateway import (
    Cut,
    Pause,
    Reply,
    error_reply,
    generate_reply,
    image_item,
    png_bytes,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("shared_key_allowed", "no_retries")]

PNG = png_bytes(8, 6)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def gateway_images(fake_gateway, settings):
    """Image URLs at the fake gateway may be fetched: it is on 127.0.0.1, a private address
    that only an entry of IMAGE_FETCH_ALLOW_PRIVATE lets through."""
    settings.IMAGE_FETCH_ALLOW_PRIVATE = [httpx.URL(fake_gateway.base_url).netloc.decode()]


def redirect(location: str) -> Reply:
    return Reply(status=302, headers={"Location": location}, body=b"")


async def ask(user, model, text="Draw a red square"):
    socket = await open_socket(user)
    await socket.send_to(text_data=send(text, model))
    frames = await until_done(socket, timeout=20)
    await socket.disconnect()
    await no_generation_left()
    return frames, await db(lambda: Message.objects.filter(role="assistant").last())


@sync_to_async
def fetch(user, url):
    client = Client()
    if user is not None:
        client.force_login(user)
    response = client.get(url)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


async def test_an_image_answer_is_stored_shown_and_billed(alice, db_models, gateway_url, fake_gateway):
    image = db_models["image"]
    fake_gateway.queue(
        generate_reply([image_item(b64(PNG)), {"type": "text", "name": "output", "content": "A *red* square."}])
    )
    frames, answer = await ask(alice, image.pk)

    # The request: POST /generate (not the stream), the same body as a chat.
    (request,) = fake_gateway.requests
    assert request.path == "/api/v1/generate"
    assert request.json["model_name"] == "gemini-2.5-flash-image"
    assert request.json["input"] == [{"type": "text", "name": "input", "content": "Draw a red square"}]
    assert request.headers["x-api-key"] == "sk_test_site_key"

    # While waiting, the page shows the answer as generating (an empty busy answer: the
    # stylesheet draws the progress indicator), with Stop.
    turn = next(f for f in frames if "beforeend:#messages" in f)
    empty = '<div class="live-done"></div><div class="live-open"></div><span class="live-tail"></span>'
    assert re.sub(r' id="[^"]*"', "", turn).count(empty) == 2  # thinking and answer, both empty
    assert "Stop</button>" in turn

    assert (answer.status, answer.content, answer.error) == ("complete", "A *red* square.", "")
    (attachment,) = await db(lambda: list(Attachment.objects.filter(message=answer)))
    assert (attachment.mime_type, attachment.size, attachment.width, attachment.height) == ("image/png", len(PNG), 8, 6)
    assert attachment.source == "base64"
    assert attachment.file.name.startswith(f"attachments/{alice.pk}/") and attachment.file.name.endswith(".png")
    with default_storage.open(attachment.file.name, "rb") as stored:
        assert stored.read() == PNG
    assert f'<img src="/attachments/{attachment.pk}/"' in frames[-1]
    assert "A <em>red</em> square." in frames[-1]

    log = await db(lambda: CostLog.objects.get())
    assert (log.cost_input, log.cost_total, log.total_tokens) == (Decimal("9E-7"), Decimal("0.0003879"), 1302)
    assert '1302 tokens · <span class="money" title="$0.0003879">$0.000388</span>' in frames[-1]

    # Served to alice, with the type the bytes have; a 404 for bob; login for visitors.
    response, body = await fetch(alice, f"/attachments/{attachment.pk}/")
    assert response.status_code == 200 and body == PNG
    assert response["Content-Type"] == "image/png" and response["X-Content-Type-Options"] == "nosniff"
    assert "private" in response["Cache-Control"]
    response, _ = await fetch(None, f"/attachments/{attachment.pk}/")
    assert response.status_code == 302
    conversation = await db(lambda: Conversation.objects.get())
    response, page = await fetch(alice, f"/c/{conversation.pk}/")
    assert f'<img src="/attachments/{attachment.pk}/"' in page.decode()


async def test_bob_gets_a_404_for_alices_image(alice, bob, db_models, gateway_url, fake_gateway):
    fake_gateway.queue(generate_reply([image_item(b64(PNG))]))
    await ask(alice, db_models["image"].pk)
    attachment = await db(lambda: Attachment.objects.get())
    response, body = await fetch(bob, f"/attachments/{attachment.pk}/")
    assert response.status_code == 404 and PNG not in body
    response, _ = await fetch(bob, f"/attachments/{attachment.pk + 1}/")
    assert response.status_code == 404


@pytest.mark.parametrize(
    "fmt, mime",
    [("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")],
)
async def test_it_takes_data_uris_and_urls_in_every_allowed_format(
    alice, db_models, gateway_url, fake_gateway, gateway_images, fmt, mime
):
    data = png_bytes(5, 4, fmt=fmt)
    fake_gateway.files["picture"] = (data, "application/octet-stream")  # a wrong type: the bytes decide
    fake_gateway.queue(
        generate_reply(
            [
                image_item(f"data:{mime};base64,{b64(data)}", mime_type=None),
                image_item(f"{gateway_url}/files/picture", mime_type="image/png"),  # a wrong claim, too
            ]
        )
    )
    _, answer = await ask(alice, db_models["image"].pk)
    assert answer.status == "complete", answer.error
    attachments = await db(lambda: list(Attachment.objects.filter(message=answer).order_by("id")))
    assert [(a.mime_type, a.source, a.size) for a in attachments] == [
        (mime, "data-uri", len(data)),
        (mime, "url", len(data)),
    ]
    assert attachments[1].source_url == f"{gateway_url}/files/picture"


@pytest.mark.parametrize(
    "item, message",
    [
        (
            image_item(b64(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>"), "image/svg+xml"),
            "is not a PNG, JPEG, WebP or GIF image; it was not kept.",
        ),
        (image_item(b64(b"MZ\x90\x00 an executable"), "image/png"), "is not a PNG, JPEG, WebP or GIF image"),
        (image_item(b64(png_bytes(4, 4, fmt="BMP")), "image/png"), "(it looks like BMP)"),
        (image_item(b64(PNG[:-12]), "image/png"), "a damaged PNG file"),
        (image_item("not base64 at all!!"), "base64 could not be read"),
        (image_item(""), "no content"),
    ],
    ids=["svg", "executable", "bmp", "truncated", "bad-base64", "empty"],
)
async def test_it_refuses_what_is_not_an_allowed_image_and_still_bills_it(
    alice, db_models, gateway_url, fake_gateway, item, message
):
    fake_gateway.queue(generate_reply([item]))
    frames, answer = await ask(alice, db_models["image"].pk)
    assert answer.status == "failed" and answer.error_kind == "image"
    assert message in answer.error and "it was not kept" in answer.error.lower()
    assert "not kept" in frames[-1] and ">Retry</button>" in frames[-1]
    assert await db(lambda: Attachment.objects.count()) == 0
    assert await db(lambda: CostLog.objects.count()) == 1  # the gateway charged for it


async def test_it_refuses_images_over_the_size_limit(
    alice, db_models, gateway_url, fake_gateway, gateway_images, settings
):
    settings.MAX_IMAGE_BYTES = 1000
    big = png_bytes(300, 300, color=(1, 2, 3))
    big = big + b"\0" * max(0, 1001 - len(big))
    fake_gateway.files["big"] = (big, "image/png")
    fake_gateway.queue(
        generate_reply([image_item(b64(PNG)), image_item(b64(big)), image_item(f"{gateway_url}/files/big")])
    )
    frames, answer = await ask(alice, db_models["image"].pk)
    # The small one is kept; each big one is refused, saying why.
    assert answer.status == "complete"
    assert f"An image of {len(big)} bytes is over the 1000 bytes limit; it was not kept." in answer.error
    assert "The image is " in answer.error and "over the 1000 bytes limit. It was not kept." in answer.error
    assert await db(lambda: Attachment.objects.count()) == 1
    assert "over the 1000 bytes limit" in frames[-1]


async def test_stop_cancels_the_wait_for_an_image(alice, db_models, gateway_url, fake_gateway):
    fake_gateway.queue(generate_reply([image_item(b64(PNG))], delay=20))
    socket = await open_socket(alice)
    await socket.send_to(text_data=send("Draw slowly", db_models["image"].pk))
    await frames_until(socket, "aria-busy")
    conversation = await db(lambda: Conversation.objects.get())
    await socket.send_to(text_data=json.dumps({"action": "stop", "conversation": conversation.pk}))
    frames = await until_done(socket)
    await socket.disconnect()
    await no_generation_left()
    assert fake_gateway.closed.wait(5), "the gateway request was not closed"
    answer = await db(lambda: Message.objects.get(role="assistant"))
    assert answer.status == "stopped" and "Stopped." in frames[-1] and "No cost reported" in frames[-1]
    assert await db(lambda: CostLog.objects.count()) == 0


@pytest.mark.parametrize(
    "replies, message, retry, requests",
    [
        ([error_reply(503, {"detail": "overloaded"})] * 3, "The gateway failed (HTTP 503): overloaded", True, 3),
        ([error_reply(401, {"detail": "Invalid API key"})], "refused the API key: Invalid API key", False, 1),
        (
            [Reply(headers={"Content-Type": "application/json"}, body=b"<html>oops</html>")],
            "could not be read",
            True,
            1,
        ),
        (
            [Reply(headers={"Content-Type": "application/json"}, body=b'{"error": "provider down"}')],
            "provider down",
            True,
            1,
        ),
        (
            [Reply(headers={"Content-Type": "application/json"}, parts=[b'{"output": [', Cut()])],
            "connection to the gateway broke",
            True,
            1,
        ),
        ([generate_reply([])], "had no text and no image", True, 1),
    ],
    ids=["503-retried", "401", "not-json", "error-body", "cut", "empty"],
)
async def test_faults_of_an_image_model_are_explained(
    alice, db_models, gateway_url, fake_gateway, settings, replies, message, retry, requests
):
    settings.UPSTREAM_RETRIES = 2
    settings.UPSTREAM_RETRY_BACKOFF = 0.01
    fake_gateway.queue(*replies)
    frames, answer = await ask(alice, db_models["image"].pk)
    assert answer.status == "failed" and message in answer.error
    assert (">Retry</button>" in frames[-1]) is retry
    assert len(fake_gateway.requests) == requests
    if requests == 3:
        assert sum("Trying again" in f for f in frames) == 2


async def test_deleting_the_conversation_deletes_its_images(alice, db_models, gateway_url, fake_gateway):
    fake_gateway.queue(generate_reply([image_item(b64(PNG)), image_item(b64(png_bytes(3, 3)))]))
    await ask(alice, db_models["image"].pk)
    names = await db(lambda: list(Attachment.objects.values_list("file", flat=True)))
    assert len(names) == 2 and all(default_storage.exists(name) for name in names)
    conversation = await db(lambda: Conversation.objects.get())

    @sync_to_async
    def delete():
        client = Client()
        client.force_login(alice)
        return client.post(f"/c/{conversation.pk}/delete/")

    assert (await delete()).status_code == 302
    assert not any(default_storage.exists(name) for name in names)
    assert await db(lambda: Attachment.objects.count()) == 0
    assert await db(lambda: CostLog.objects.filter(conversation=None).count()) == 1  # the ledger keeps its row


async def test_an_answer_keeps_at_most_max_images_per_answer_and_says_so(alice, db_models, gateway_url, fake_gateway):
    fake_gateway.queue(generate_reply([image_item(b64(png_bytes(2 + i, 2))) for i in range(10)]))
    frames, answer = await ask(alice, db_models["image"].pk)
    assert answer.status == "complete" and answer.error_kind == "image"
    assert "The gateway sent 10 images, more than the 8 an answer may have: the last 2 were left out." in answer.error
    attachments = await db(lambda: list(Attachment.objects.filter(message=answer).order_by("id")))
    assert [a.width for a in attachments] == [2, 3, 4, 5, 6, 7, 8, 9]
    assert "the last 2 were left out" in frames[-1]


async def test_a_refused_image_url_does_not_drop_the_images_after_it(
    alice, db_models, gateway_url, fake_gateway, gateway_images
):
    fake_gateway.file_replies["loop"] = redirect(f"{gateway_url}/files/loop")
    fake_gateway.queue(
        generate_reply(
            [
                image_item(f"{gateway_url}/files/loop"),
                image_item("http://169.254.169.254/latest/meta-data/"),
                image_item(b64(PNG)),
            ]
        )
    )
    frames, answer = await ask(alice, db_models["image"].pk)
    assert answer.status == "complete" and answer.error_kind == "image"
    assert "Could not fetch the image at 127.0.0.1: more than 3 redirects. It was not kept." in answer.error
    assert "Could not fetch the image at 169.254.169.254: it points at a private address." in answer.error
    assert await db(lambda: Attachment.objects.count()) == 1


# --- the adapter on its own ------------------------------------------------------------------


async def test_the_adapter_reads_every_item_of_a_generate_answer(fake_gateway):
    fake_gateway.queue(
        generate_reply(
            [
                {"type": "text", "name": "thinking", "content": "Hmm."},
                {"type": "text", "name": "output", "content": "Here: "},
                image_item(b64(PNG)),
                image_item("data:image/png;base64," + b64(PNG)),
                image_item("https://cdn.example/x.png"),
                {"type": "metadata", "name": "metadata", "content": "{}"},
                "and a bare string",
            ],
            warnings=["2 images left today"],
        )
    )
    try:
        result = await gateway.generate(base_url=fake_gateway.base_url, api_key="sk_x", body={"input": []})
    finally:
        await gateway.get_client().aclose()
    assert (result.text, result.thinking) == ("Here: and a bare string", "Hmm.")
    assert [(i.source, i.data == PNG, i.url) for i in result.images] == [
        ("base64", True, None),
        ("data-uri", True, None),
        ("url", False, "https://cdn.example/x.png"),
    ]
    assert result.extras == [{"type": "metadata", "name": "metadata", "content": "{}"}]
    assert result.final.cost_total == Decimal("0.0003879") and result.final.warnings == ["2 images left today"]


async def test_the_adapter_caps_the_answer_and_redacts_the_key(fake_gateway):
    fake_gateway.queue(
        generate_reply([image_item(b64(png_bytes(200, 200)))]),
        error_reply(403, {"detail": "key sk_secret_123 is disabled"}),
    )
    try:
        with pytest.raises(gateway.GatewayError) as too_big:
            await gateway.generate(base_url=fake_gateway.base_url, api_key="sk_x", body={}, max_bytes=100)
        with pytest.raises(gateway.GatewayError) as refused:
            await gateway.generate(base_url=fake_gateway.base_url, api_key="sk_secret_123", body={})
    finally:
        await gateway.get_client().aclose()
    assert too_big.value.kind == "too_large" and "over the 100 bytes limit" in too_big.value.message
    assert refused.value.kind == "key_refused" and "sk_secret_123" not in refused.value.message


async def test_fetch_gets_an_image_given_as_a_url_and_says_why_it_could_not(fake_gateway, gateway_images, caplog):
    caplog.set_level(logging.WARNING, logger="conversations.gateway")
    fake_gateway.files["picture"] = (PNG, "image/png")
    url = f"{fake_gateway.base_url}/files/"
    try:
        data, content_type = await images.fetch(url + "picture", max_bytes=1000, timeout=5)
        with pytest.raises(gateway.GatewayError) as missing:
            await images.fetch(url + "nothing", max_bytes=1000, timeout=5)
        with pytest.raises(gateway.GatewayError) as too_big:
            await images.fetch(url + "picture", max_bytes=10, timeout=5)
    finally:
        await gateway.get_client().aclose()
    assert (data, content_type) == (PNG, "image/png")
    assert missing.value.kind == gateway.ErrorKind.IMAGE and missing.value.status == 404
    assert missing.value.message == "Could not fetch the image at 127.0.0.1: HTTP 404."
    assert too_big.value.kind == gateway.ErrorKind.TOO_LARGE
    warnings = [r.getMessage() for r in caplog.records if r.name == "conversations.gateway"]
    assert len(warnings) == 2 and "image (HTTP 404)" in warnings[0] and "too_large" in warnings[1]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/api/v1/files/picture",  # the fake gateway itself
        "http://localhost:{port}/api/v1/files/picture",
        "http://[::1]:{port}/api/v1/files/picture",
        "http://0.0.0.0:{port}/api/v1/files/picture",
        "http://10.1.2.3/picture.png",
        "http://192.168.0.1/picture.png",
        "http://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
        "http://[fe80::1]/picture.png",
    ],
)
async def test_fetch_refuses_image_urls_at_private_addresses(fake_gateway, url):
    fake_gateway.files["picture"] = (PNG, "image/png")
    url = url.format(port=httpx.URL(fake_gateway.base_url).port)
    with pytest.raises(gateway.GatewayError) as refused:
        await images.fetch(url, max_bytes=100_000, timeout=2)
    assert refused.value.kind == gateway.ErrorKind.IMAGE
    host = httpx.URL(url).host
    assert refused.value.message == f"Could not fetch the image at {host}: it points at a private address."
    assert fake_gateway.gets == []


@pytest.mark.parametrize(
    "address, public",
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.2", False),
        ("100.64.0.1", False),  # shared (carrier-grade NAT)
        ("224.0.0.251", False),  # multicast
        ("fc00::1", False),
        ("ff02::1", False),
        ("fe80::1%eth0", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped
        ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
    ],
)
def test_only_public_addresses_are_public(address, public):
    assert images.is_public(address) is public


@pytest.mark.parametrize(
    "location, message, gets",
    [
        ("http://localhost:{port}/api/v1/files/picture", "it redirects to a private address", 1),
        ("http://169.254.169.254/latest/meta-data/", "it redirects to a private address", 1),
        ("file:///etc/passwd", "it redirects to an address that is not http or https", 1),
        ("{base}/files/hop", "more than 3 redirects", 4),
    ],
    ids=["loopback", "link-local", "file", "loop"],
)
async def test_fetch_checks_every_redirect(fake_gateway, gateway_images, location, message, gets):
    base = fake_gateway.base_url
    fake_gateway.files["picture"] = (PNG, "image/png")
    fake_gateway.file_replies["hop"] = redirect(location.format(port=httpx.URL(base).port, base=base))
    with pytest.raises(gateway.GatewayError) as refused:
        await images.fetch(f"{base}/files/hop", max_bytes=100_000, timeout=5)
    assert refused.value.kind == gateway.ErrorKind.IMAGE
    assert refused.value.message == f"Could not fetch the image at 127.0.0.1: {message}."
    assert fake_gateway.gets == ["/api/v1/files/hop"] * gets


async def test_fetch_follows_a_redirect_to_an_allowed_address(fake_gateway, gateway_images):
    fake_gateway.files["picture"] = (PNG, "image/png")
    fake_gateway.file_replies["hop"] = redirect("picture")  # relative to the URL it came from
    data, content_type = await images.fetch(f"{fake_gateway.base_url}/files/hop", max_bytes=100_000, timeout=5)
    assert (data, content_type) == (PNG, "image/png")
    assert fake_gateway.gets == ["/api/v1/files/hop", "/api/v1/files/picture"]


async def test_fetch_has_one_deadline_for_the_whole_image(fake_gateway, gateway_images):
    # Every piece comes well within the timeout; the whole image does not.
    pieces = [PNG[i : i + 10] for i in range(0, len(PNG), 10)]
    parts = [part for piece in pieces for part in (piece, Pause(0.3))]
    assert len(pieces) >= 6
    fake_gateway.file_replies["slow"] = Reply(headers={"Content-Type": "image/png"}, parts=parts)
    with pytest.raises(gateway.GatewayError) as slow:
        await images.fetch(f"{fake_gateway.base_url}/files/slow", max_bytes=100_000, timeout=1)
    assert slow.value.message == "Could not fetch the image at 127.0.0.1: it took more than 1 s."


@pytest.mark.parametrize("host", ["127.0.0.1", "no-such-host.invalid"])
async def test_fetch_says_an_image_could_not_be_fetched_without_connection_details(settings, host):
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.IMAGE_FETCH_ALLOW_PRIVATE = [f"127.0.0.1:{port}"]
    with pytest.raises(gateway.GatewayError) as failed:
        await images.fetch(f"http://{host}:{port}/picture.png", max_bytes=100_000, timeout=5)
    assert failed.value.kind == gateway.ErrorKind.IMAGE
    assert failed.value.message == f"Could not fetch the image at {host}."


async def test_the_demo_gateway_draws_a_picture_for_image_models(settings):
    """`make run` with no gateway: the demo answers /generate with a real PNG, as base64."""
    from django.test import AsyncRequestFactory

    from conversations import images
    from conversations.gateway import demo as demo_gateway

    settings.DEMO_GATEWAY_DELAY = 0
    body = {
        "service_name": "google-gemini",
        "model_name": "gemini-2.5-flash-image",
        "input": [{"type": "text", "name": "input", "content": "A lighthouse at dusk"}],
    }
    request = AsyncRequestFactory().post(
        "/demo-gateway/api/v1/generate",
        json.dumps(body),
        content_type="application/json",
        headers={"X-API-Key": "sk_demo"},
    )
    response = await demo_gateway.generate(request)
    assert response.status_code == 200
    result = _generated(json.loads(response.content, parse_float=Decimal))
    (image,) = result.images
    checked = images.check(image.data)
    assert (checked.mime_type, checked.width, checked.height) == ("image/png", 384, 256)
    assert "demo gateway" in result.text and result.final.cost_total > 0
    unauthorised = AsyncRequestFactory().post("/demo-gateway/api/v1/generate", "{}", content_type="application/json")
    assert (await demo_gateway.generate(unauthorised)).status_code == 401
