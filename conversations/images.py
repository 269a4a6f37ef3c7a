"""Images an answer brings: fetched (if the gateway gave a URL), checked by their bytes,
then stored under MEDIA_ROOT.

The gateway's word (a `mime_type`, a URL's extension, a Content-Type) is never trusted:
Pillow reads the bytes, and only PNG, JPEG, WebP and GIF are kept. Files are named by
the server (a random name under attachments/<user id>/), never by the gateway, and are
served only through views.attachment, to the conversation's owner.
"""

from __future__ import annotations

import asyncio
import io
import uuid
import warnings
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, UnidentifiedImageError

from conversations.gateway.client import get_client, read_capped
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


async def fetch(
    url: str,
    *,
    client: httpx.AsyncClient | None = None,
    max_bytes: int,
    timeout: float,  # httpx's, for each connect and read
) -> tuple[bytes, str | None]:
    """GET an image the gateway gave as a URL: (bytes, the Content-Type it was served as).

    Raises GatewayError "too_large" past `max_bytes`, "image" for anything else, logged
    like the gateway's own failures. The bytes are not checked yet: that is `check`.
    """
    client = client or get_client()
    where = display_url(url)
    try:
        async with client.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if not response.is_success:
                raise GatewayError(
                    ErrorKind.IMAGE,
                    f"Could not fetch the image at {where}: HTTP {response.status_code}.",
                    status=response.status_code,
                )
            data = await read_capped(response, max_bytes, "The image")
            return data, response.headers.get("content-type")
    except GatewayError as exc:
        raise log_failure(exc, where) from None
    except httpx.TimeoutException:
        error = GatewayError(ErrorKind.IMAGE, f"Could not fetch the image at {where}: timed out.")
        raise log_failure(error, where) from None
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        error = GatewayError(ErrorKind.IMAGE, f"Could not fetch the image at {where}{reason(exc)}.")
        raise log_failure(error, where) from None


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


async def receive(image: GatewayImage, client: httpx.AsyncClient | None = None) -> CheckedImage:
    """An image from an image model's answer, fetched if a URL and checked by its bytes.

    Raises RejectedImage saying why it is not kept (it could not be read or fetched, or
    its bytes are not an allowed image).
    """
    if image.error:
        raise RejectedImage(image.error + " It was not kept.")
    data = image.data
    if image.url:
        try:
            data, _ = await fetch(
                image.url, client=client, max_bytes=settings.MAX_IMAGE_BYTES, timeout=settings.IMAGE_FETCH_TIMEOUT
            )
        except GatewayError as exc:
            raise RejectedImage(f"{exc.message} It was not kept.") from None
    if data is None:
        raise RejectedImage("The gateway sent an image item with nothing in it. It was not kept.")
    # Pillow reads the bytes: off the event loop.
    return await asyncio.to_thread(check, data, source=image.source, source_url=image.url or "")


def store(image: CheckedImage, user_id: int) -> str:
    """Save the bytes under MEDIA_ROOT with a name of our own; returns the storage name."""
    return default_storage.save(f"attachments/{user_id}/{uuid.uuid4().hex}.{image.extension}", ContentFile(image.data))
