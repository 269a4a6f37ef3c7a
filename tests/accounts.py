"""Accounts as tests make them: users, sign-up through the form, a stored API key.

The browser tests take the same steps through the pages (tests/browser.py).
"""

from __future__ import annotations

PASSWORD = "a-long-passphrase-42"  # long enough for the password validators


def make_user(username: str, **extra):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username, password="password-of-" + username, **extra)


def sign_up(client, username: str, password: str = PASSWORD):
    """The sign-up form, posted as the page posts it (the client is logged in after)."""
    return client.post("/accounts/signup/", {"username": username, "password1": password, "password2": password})


def add_key(user, label: str, secret: str, in_use: bool = True):
    """An API key of the user's, stored (encrypted) as the keys page stores it."""
    from conversations.models import ApiKey

    key = ApiKey(user=user, label=label)
    key.set_secret(secret)
    key.save()
    if in_use:
        key.use()
    return key
