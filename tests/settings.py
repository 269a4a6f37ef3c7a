"""Settings for the test suite: the real settings, with what tests need set first."""

import os

# Hermetic: no developer .env, no real gateway, known secrets.
os.environ["ENV_FILE"] = ""
os.environ.setdefault("SECRET_KEY", "tests-only-not-secret")
os.environ["UPSTREAM_BASE_URL"] = "http://127.0.0.1:9/api/v1"  # each test points it at its fake
os.environ["UPSTREAM_API_KEY"] = "sk_test_site_key"
os.environ["FIELD_ENCRYPTION_KEYS"] = "dGVzdHMtb25seS10ZXN0cy1vbmx5LXRlc3RzLW9ubHk="

from chatsite.settings import *  # noqa: F403

STATIC_ROOT = None  # nothing collected; WhiteNoise would warn about a missing folder
# Page renders in tests use {% static %} without running collectstatic.
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
STREAM_FLUSH_INTERVAL = 0.01
# Attachments written by tests go to a throwaway folder, never to data/media.
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="chatsite-test-media-"))  # noqa: F405
atexit.register(shutil.rmtree, MEDIA_ROOT, ignore_errors=True)
# The socket tests check the relay's mechanics on plain-text frames; tests/test_live.py
# turns live rendering on, and the browser tests run the app with its defaults.
LIVE_RENDERING = False
