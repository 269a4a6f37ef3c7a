"""Settings for the test suite: the real settings, with what tests need set first."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-secret")
os.environ.setdefault("UPSTREAM_BASE_URL", "http://127.0.0.1:9/api/v1")  # each test points it at its fake
os.environ.setdefault("UPSTREAM_API_KEY", "sk_test_site_key")

from chatsite.settings import *  # noqa: E402,F403

# Page renders in tests use {% static %} without running collectstatic.
STATIC_ROOT = None  # nothing collected; WhiteNoise would warn about a missing folder
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
STREAM_FLUSH_INTERVAL = 0.01
