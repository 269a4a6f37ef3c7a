"""The vault: encryption at rest, rotation, masking, validation, and no key in any log."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from conversations.keys import vault
from conversations.models import ApiKey, SiteSettings
from tests.accounts import add_key

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk_live_4f9a8b7c6d5e4f3a2b1c0d9e8f7a1b2"


def test_it_encrypts_and_decrypts():
    token = vault.encrypt(SECRET)
    assert SECRET not in token
    assert vault.encrypt(SECRET) != token  # a fresh IV every time
    assert vault.decrypt(token) == SECRET


def test_it_cannot_decrypt_with_the_wrong_key(settings):
    token = vault.encrypt(SECRET)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(vault.UndecryptableKey):
        vault.decrypt(token)


@pytest.mark.parametrize(
    "secret, masked",
    [
        ("sk_live_4f9a8b7c6d5e4f3a2b1c0d9e8f7a1b2", "sk_…a1b2"),
        ("0123456789abcdefghij", "…ghij"),
        ("sk_short", "sk_…"),  # too short to show its end
        ("key-abcdefghijklmnop", "key-…mnop"),
    ],
)
def test_it_masks_keys(secret, masked):
    assert vault.mask(secret) == masked


def test_it_strips_surrounding_whitespace():
    assert vault.clean_value("  \tsk_abc123\n ") == "sk_abc123"


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "Enter the API key"),
        ("   \n", "Enter the API key"),
        ("sk_abc def", "no spaces or line breaks"),
        ("sk_abc\ndef", "no spaces or line breaks"),
        ("sk_abc\x00def", "no control characters"),
        ("sk_abc\x1bdef", "no control characters"),
        ("k" * 513, "at most 512"),
    ],
)
def test_it_refuses_bad_values(value, message):
    with pytest.raises(ValidationError) as excinfo:
        vault.clean_value(value)
    assert message in str(excinfo.value)


@pytest.mark.django_db
def test_rotation_lets_the_old_key_go(alice, settings):
    old, new = settings.FIELD_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()
    key = add_key(alice, "Personal", SECRET)
    site = SiteSettings.load()
    site.set_shared_key("sk_shared_0123456789abcdef")
    site.save()

    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_encryption_keys", stdout=open(os.devnull, "w"))
    settings.FIELD_ENCRYPTION_KEYS = [new]

    key.refresh_from_db()
    assert key.reveal() == SECRET
    assert SiteSettings.load().shared_key() == "sk_shared_0123456789abcdef"


@pytest.mark.django_db
def test_rotation_changes_nothing_if_a_key_cannot_be_read(alice, settings):
    key = add_key(alice, "Personal", SECRET)
    before = key.ciphertext
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key was dropped too early
    with pytest.raises(CommandError, match="Nothing was changed"):
        call_command("rotate_encryption_keys")
    assert ApiKey.objects.get(pk=key.pk).ciphertext == before


def test_the_database_file_holds_no_key_in_clear(tmp_path):
    """Store keys through the real app in a SQLite file, then read its bytes."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))},
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "ENV_FILE": "",
        "SECRET_KEY": "x",
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATA_DIR": str(tmp_path),
    }
    script = (
        "from django.contrib.auth.models import User; "
        "from conversations.models import ApiKey, SiteSettings; "
        "u = User.objects.create_user('alice'); "
        f"k = ApiKey(user=u, label='Personal'); k.set_secret({SECRET!r}); k.save(); "
        "s = SiteSettings.load(); s.set_shared_key('sk_shared_0123456789abcdef'); s.save(); "
        f"assert ApiKey.objects.get().reveal() == {SECRET!r}"
    )
    for args in (["migrate", "-v0"], ["shell", "-c", script]):
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)
    database = tmp_path / "chatsite.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert connection.execute("SELECT count(*) FROM conversations_apikey").fetchone() == (1,)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("chatsite.sqlite3*"))
    assert SECRET.encode() not in raw
    assert b"sk_shared_0123456789abcdef" not in raw
    assert b"sk_\xe2\x80\xa6a1b2" in raw  # the mask is there: the test reads the right file


def test_the_scrubber_keeps_decrypted_keys_out_of_log_lines():
    vault.decrypt(vault.encrypt(SECRET))
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "sent %s to the gateway", (SECRET,), None)
    try:
        raise RuntimeError(f"boom {SECRET}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    assert vault.Scrubber().filter(record)
    formatted = logging.Formatter().format(record)
    assert SECRET not in formatted
    assert "sent [API key] to the gateway" in formatted and "boom [API key]" in formatted
