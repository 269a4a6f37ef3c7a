"""Images an answer brings: fetched (if the gateway gave a URL), checked by their bytes,
then stored under MEDIA_ROOT.

The gateway's word (a `mime_type`, a URL's extension, a Content-Type) is never trusted:
Pillow reads the bytes, and only PNG, JPEG, WebP and GIF are kept. Files are named by
the server (a random name under attachments/<user id>/), never by the gateway, and are
served only through views.attachment, to the conversation's owner. An image given as a
URL is fetched only from a public address (`fetch`), and an answer keeps at most
MAX_IMAGES_PER_ANSWER images (`receive_all`).
"""

from __future__ import annotations

import asyncio
import functools
import io
import ipaddress
import socket
import ssl
import uuid
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, UnidentifiedImageError

from conversations.gateway.client import no_cookies, read_capped
from conversations.gateway.errors import ErrorKind, GatewayError, display_url, human_size, log_failure, reason
from conversations.gateway.types import Image as GatewayImage

# Pillow's format name -> (MIME type, file extension)
ALLOWED = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
}
ALLOWED_NAMES = "PNG, JPEG, WebP or GIF"


# Redirects followed for one image, each checked like the first address.
MAX_REDIRECTS = 3
# NAT64's well-known prefix: its addresses reach the IPv4 address in their last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


async def fetch(url: str, *, max_bytes: int, timeout: float) -> tuple[bytes, str | None]:
    """GET an image the gateway gave as a URL: (bytes, the Content-Type it was served as).

    Only public addresses are fetched (each redirect is checked again, up to
    MAX_REDIRECTS), unless IMAGE_FETCH_ALLOW_PRIVATE names the host and port, and the
    connection goes to the address that was checked. `timeout` covers it all: DNS,
    connecting, redirects and the body. Raises GatewayError "too_large" past
    `max_bytes`, "image" for anything else, in words that name the host and say nothing
    of the connection (they are shown to the user), logged like the gateway's own
    failures. The bytes are not checked yet: that is `check`.
    """
    host = _host_of(url)
    where = display_url(url)  # for the log: operators see the details users don't
    try:
        async with asyncio.timeout(timeout), _client() as client:
            return await _get(client, httpx.URL(url), host, max_bytes)
    except GatewayError as exc:
        error = exc
    except TimeoutError:
        error = GatewayError(ErrorKind.IMAGE, f"Could not fetch the image at {host}: it took more than {timeout:g} s.")
    except (httpx.HTTPError, httpx.InvalidURL, OSError, UnicodeError) as exc:
        error = GatewayError(ErrorKind.IMAGE, f"Could not fetch the image at {host}.")
        where += reason(exc)
    raise log_failure(error, where) from None


def _client() -> httpx.AsyncClient:
    """A client for one image: its own connections (none kept alive, so none serves
    another host at the same address), no cookies, redirects left to `_get`, and no
    proxy from the environment (a proxy would connect to an address of its choosing)."""
    return httpx.AsyncClient(
        timeout=None,  # fetch's deadline covers it all
        verify=_ssl_context(),
        limits=httpx.Limits(max_keepalive_connections=0),
        cookies=no_cookies(),
        follow_redirects=False,
        trust_env=False,
    )


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()  # loading the CA bundle takes a while: once


async def _get(client: httpx.AsyncClient, url: httpx.URL, host: str, max_bytes: int) -> tuple[bytes, str | None]:
    for hop in range(MAX_REDIRECTS + 1):
        leads = "it points at" if hop == 0 else "it redirects to"
        if url.scheme not in ("http", "https"):
            raise GatewayError(
                ErrorKind.IMAGE, f"Could not fetch the image at {host}: {leads} an address that is not http or https."
            )
        address = await _checked_address(url)
        if address is None:
            raise GatewayError(ErrorKind.IMAGE, f"Could not fetch the image at {host}: {leads} a private address.")
        # To the address checked, not to a new DNS answer; TLS still checks the name.
        request = client.build_request(
            "GET",
            url.copy_with(host=address),
            headers={"Host": url.netloc.decode("ascii")},
            extensions={"sni_hostname": url.raw_host.decode("ascii")},
        )
        response = await client.send(request, stream=True)
        try:
            if response.is_redirect:
                url = url.join(response.headers["location"])
                continue
            if not response.is_success:
                raise GatewayError(
                    ErrorKind.IMAGE,
                    f"Could not fetch the image at {host}: HTTP {response.status_code}.",
                    status=response.status_code,
                )
            return await read_capped(response, max_bytes, "The image"), response.headers.get("content-type")
        finally:
            await response.aclose()
    raise GatewayError(ErrorKind.IMAGE, f"Could not fetch the image at {host}: more than {MAX_REDIRECTS} redirects.")


async def _checked_address(url: httpx.URL) -> str | None:
    """The address to connect to for `url`, or None if any address its host has is not
    public (and IMAGE_FETCH_ALLOW_PRIVATE does not name it)."""
    name = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    found = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    if not found:  # getaddrinfo raises instead, in practice
        raise OSError(f"no address for {name}")
    addresses = [str(info[4][0]) for info in found]
    netloc = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
    if netloc.lower() not in {entry.lower() for entry in settings.IMAGE_FETCH_ALLOW_PRIVATE}:
        if not all(is_public(address) for address in addresses):
            return None
    return addresses[0]


def is_public(address: str) -> bool:
    """Whether an address is on the public internet: not loopback, private, link-local
    (a cloud's metadata service), shared, reserved, unspecified or multicast, nor an
    IPv6 form of such an IPv4 address."""
    ip = ipaddress.ip_address(address.split("%")[0])  # without an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None and not is_public(str(inner)):
            return False
    return ip.is_global and not ip.is_multicast


def _host_of(url: str) -> str:
    """The host to name in a message ("that address" if the URL has none we can read)."""
    try:
        return urlsplit(url).hostname or "that address"
    except ValueError:
        return "that address"


class RejectedImage(ValueError):
    """An image that is not kept; the message says why, for the user."""


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    mime_type: str
    extension: str
    width: int
    height: int
    source: str
    source_url: str = ""

    @property
    def size(self) -> int:
        return len(self.data)


def check(data: bytes, *, source: str = "base64", source_url: str = "") -> CheckedImage:
    """The image if its bytes are a PNG, JPEG, WebP or GIF within MAX_IMAGE_BYTES.

    Raises RejectedImage with a message for the user otherwise. Runs Pillow: call it off
    the event loop.
    """
    limit = settings.MAX_IMAGE_BYTES
    if len(data) > limit:
        raise RejectedImage(
            f"An image of {human_size(len(data))} is over the {human_size(limit)} limit; it was not kept."
        )
    if not data:
        raise RejectedImage("The gateway sent an empty image; it was not kept.")
    kind = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind = image.format
                width, height = image.size
                if kind in ALLOWED:
                    image.verify()  # reads the whole file: a truncated or corrupt one fails here
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        if kind is None:
            raise RejectedImage(
                f"The gateway sent a file that is not a {ALLOWED_NAMES} image; it was not kept."
            ) from None
        raise RejectedImage(f"The gateway sent a {kind} image too large to open; it was not kept.") from None
    except Exception:  # Pillow raises many kinds of errors for a damaged file
        raise RejectedImage(f"The gateway sent a damaged {kind or 'image'} file; it was not kept.") from None
    if kind not in ALLOWED:
        raise RejectedImage(
            f"The gateway sent a file that is not a {ALLOWED_NAMES} image (it looks like {kind}); it was not kept."
        )
    mime_type, extension = ALLOWED[kind]
    return CheckedImage(data, mime_type, extension, width, height, source, source_url)


async def receive_all(items: list[GatewayImage], kept: list[CheckedImage], refused: list[str]) -> None:
    """Receive an answer's images one by one into `kept`, at most MAX_IMAGES_PER_ANSWER,
    with a sentence in `refused` for each one not kept and for those left out. (Lists
    filled as it goes: a Stop keeps the images received so far.)"""
    limit = settings.MAX_IMAGES_PER_ANSWER
    for image in items[:limit]:
        try:
            kept.append(await receive(image))
        except RejectedImage as exc:
            refused.append(str(exc))
    if len(items) > limit:
        refused.append(
            f"The gateway sent {len(items)} images, more than the {limit} an answer may have: "
            f"the last {len(items) - limit} were left out."
        )


async def receive(image: GatewayImage) -> CheckedImage:
    """An image from an image model's answer, fetched if a URL and checked by its bytes.

    Raises RejectedImage saying why it is not kept (it could not be read or fetched, or
    its bytes are not an allowed image).
    """
    if image.error:
        raise RejectedImage(image.error + " It was not kept.")
    data = image.data
    if image.url:
        try:
            data, _ = await fetch(image.url, max_bytes=settings.MAX_IMAGE_BYTES, timeout=settings.IMAGE_FETCH_TIMEOUT)
        except GatewayError as exc:
            raise RejectedImage(f"{exc.message} It was not kept.") from None
    if data is None:
        raise RejectedImage("The gateway sent an image item with nothing in it. It was not kept.")
    # Pillow reads the bytes: off the event loop.
    return await asyncio.to_thread(check, data, source=image.source, source_url=image.url or "")


def store(image: CheckedImage, user_id: int) -> str:
    """Save the bytes under MEDIA_ROOT with a name of our own; returns the storage name."""
    return default_storage.save(f"attachments/{user_id}/{uuid.uuid4().hex}.{image.extension}", ContentFile(image.data))
