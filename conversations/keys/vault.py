"""The API key vault: encryption of users' gateway keys, and the rules for their values.

Keys are encrypted with cryptography's MultiFernet over FIELD_ENCRYPTION_KEYS (the first
key encrypts, every key decrypts) and decrypted only when a gateway request is built.
Nothing here logs, and `Scrubber` keeps any key that was decrypted out of log lines.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ValidationError

MAX_LENGTH = 512


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(secret: str) -> str:
    return _current().encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    """The key in clear. Raises `UndecryptableKey` if no configured key opens it."""
    try:
        secret = _current().decrypt(token.encode()).decode()
    except InvalidToken:
        raise UndecryptableKey(
            "A stored API key cannot be decrypted with FIELD_ENCRYPTION_KEYS: was a key removed before rotating?"
        ) from None
    remember(secret)
    return secret


def rotate(token: str) -> str:
    """The same secret, encrypted again under the first (newest) key."""
    try:
        return _current().rotate(token.encode()).decode()
    except InvalidToken:
        raise UndecryptableKey("A stored API key cannot be decrypted with FIELD_ENCRYPTION_KEYS.") from None


class UndecryptableKey(Exception):
    pass


def clean_value(value: str) -> str:
    """A key as typed, checked: surrounding whitespace goes, anything else odd is refused."""
    value = (value or "").strip()
    if not value:
        raise ValidationError("Enter the API key.")
    if len(value) > MAX_LENGTH:
        raise ValidationError(f"That is {len(value):,} characters long; an API key has at most {MAX_LENGTH}.")
    if any(ch.isspace() for ch in value):
        raise ValidationError("An API key has no spaces or line breaks inside it. Check what was pasted.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValidationError("An API key has no control characters. Check what was pasted.")
    return value


_PREFIX = re.compile(r"^[A-Za-z]{1,8}[_-]")


def mask(secret: str) -> str:
    """`sk_…a1b2`: the prefix and the last four characters, never more."""
    match = _PREFIX.match(secret)
    prefix = match.group(0) if match else ""
    # A short key would be mostly shown by its last four characters.
    tail = secret[-4:] if len(secret) - len(prefix) >= 12 else ""
    return f"{prefix}…{tail}"


class _RecentSecrets:
    """The keys decrypted lately in this process, so log lines can be scrubbed of them."""

    def __init__(self, size: int = 1000):
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def remember(self, secret: str) -> None:
        if len(secret) < 8:
            return  # too short to scrub without mangling ordinary words
        with self._lock:
            self._secrets[secret] = None
            self._secrets.move_to_end(secret)
            while len(self._secrets) > self._size:
                self._secrets.popitem(last=False)

    def scrub(self, text: str) -> str:
        with self._lock:
            secrets = list(self._secrets)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, "[API key]")
        return text


_recent_secrets = _RecentSecrets()


def remember(secret: str) -> None:
    """Scrub this secret from log lines from now on (decrypt() does it for stored keys)."""
    _recent_secrets.remember(secret)


class Scrubber(logging.Filter):
    """A logging filter that replaces any recently decrypted key with `[API key]`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _recent_secrets.scrub(message)
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            clean = _recent_secrets.scrub(text)
            if clean != text:
                record.exc_info = None
                record.exc_text = clean
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True
