"""Settings for chatsite, read from the environment.

Every value has a default that just runs on a fresh checkout (SQLite, the in-memory
channel layer, the built-in demo gateway) except where running without it would be
unsafe: then it fails at startup with a message that says what to set.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent

# Local values from .env (`make run` creates it with fresh secrets); the real
# environment wins. ENV_FILE="" turns this off (the tests do).
ENV_FILE = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE:
    load_dotenv(ENV_FILE, override=False)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be 1/0 or true/false, not {value!r}.")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}.") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_host_ports(name: str) -> list[str]:
    pairs = env_list(name)
    for pair in pairs:
        host, _, port = pair.rpartition(":")
        if not (host and port.isdigit()):
            raise ImproperlyConfigured(f"{name} must list host:port pairs (e.g. 127.0.0.1:8000), not {pair!r}.")
    return pairs


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (`make run` creates one in .env), "
            "or set DEBUG=1 for a throwaway development key."
        )
    SECRET_KEY = "insecure-development-key-only-for-debug"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# 8080, not 8000: a gateway running on the same machine usually owns 8000.
PORT = env_int("PORT", 8080)

INSTALLED_APPS = [
    "whitenoise.runserver_nostatic",
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.forms",  # Django's widget templates, for forms drawn from templates/ (SettingsForm)
    "channels",
    "django_htmx",
    "template_partials",
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "chatsite.middleware.NoStoreWhenSignedIn",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

# No inline scripts anywhere: page behaviour lives in static/chatsite.js, and htmx is
# told not to inject its indicator styles. Inline style attributes stay allowed for the
# Django admin. Images only from the site itself (an answer's attachments; a markdown
# image in an answer is a link): data: is the favicon.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "conversations.context_processors.gateway",
            ],
        },
    },
]

DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / "data"))
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if not DATABASE_URL:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASE_URL = f"sqlite:///{DATA_DIR / 'chatsite.sqlite3'}"
# Connections are kept (and health-checked) between requests: generation tasks write a
# checkpoint every second per stream, and a new SQLite connection per write cost a fifth
# of the relay's CPU in the benchmark's profile.
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 600), conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the page read while a generation checkpoints; the timeout rides out
    # short write locks instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    # Redis pub/sub: a live relay needs no message persistence (the database keeps the
    # text, and a socket that missed deltas gets a catch-up), and it has less work per
    # message than the list-based RedisChannelLayer, which passes the suite too.
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "chatsite.layers.InMemoryLayer", "CONFIG": {"capacity": 1000}}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "index"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT: Path | None = Path(os.environ.get("STATIC_ROOT", DATA_DIR / "static"))  # None in tests
# Files answers bring (generated images). Never served as public media: views.attachment
# serves each to its conversation's owner only, so there is no MEDIA_URL route.
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", DATA_DIR / "media"))
MEDIA_URL = "/media-not-served/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every line passes the vault's scrubber: no decrypted API key reaches a log.
    "filters": {"scrub_keys": {"()": "conversations.keys.vault.Scrubber"}},
    # Time, level and logger on every line, so an operator can read and grep them.
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["scrub_keys"], "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"conversations": {"level": os.environ.get("LOG_LEVEL", "INFO")}},
}

# --- chatsite's own settings -------------------------------------------------------

# Users' gateway keys are encrypted with these Fernet keys (comma-separated): the first
# encrypts, all decrypt, so a new key goes first and the old one stays until
# `manage.py rotate_encryption_keys` has re-encrypted everything under the new one.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS is not set. Generate one with `python -c 'from cryptography.fernet "
            "import Fernet; print(Fernet.generate_key().decode())'` (`make run` puts one in .env)."
        )
    # A fixed, public key: DEBUG only, and never derived from SECRET_KEY.
    FIELD_ENCRYPTION_KEYS = ["ZGVidWctb25seS1ub3Qtc2VjcmV0LWRlYnVnLW9ubHk="]
for _position, _key in enumerate(FIELD_ENCRYPTION_KEYS, start=1):
    try:
        Fernet(_key)
    except ValueError:
        raise ImproperlyConfigured(
            f"FIELD_ENCRYPTION_KEYS: key number {_position} is not a Fernet key (32 url-safe base64-encoded bytes)."
        ) from None

ALLOW_SIGNUP = env_bool("ALLOW_SIGNUP", True)

# With no UPSTREAM_BASE_URL the app serves its own demo gateway at /demo-gateway/ and
# talks to it over a real HTTP socket, through the same client a real gateway gets.
UPSTREAM_BASE_URL = os.environ.get("UPSTREAM_BASE_URL", "").rstrip("/")
DEMO_GATEWAY = not UPSTREAM_BASE_URL
if DEMO_GATEWAY:
    UPSTREAM_BASE_URL = f"http://127.0.0.1:{PORT}/demo-gateway/api/v1"
elif not UPSTREAM_BASE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"UPSTREAM_BASE_URL must start with http:// or https://, not {UPSTREAM_BASE_URL!r}.")
UPSTREAM_API_KEY = os.environ.get("UPSTREAM_API_KEY", "") or ("sk_demo" if DEMO_GATEWAY else "")
# The longest silence allowed between two chunks (thinking models can be quiet a while).
UPSTREAM_READ_TIMEOUT = env_float("UPSTREAM_READ_TIMEOUT", 120.0)
# Seconds the demo gateway waits between chunks (tests make it faster or slower).
DEMO_GATEWAY_DELAY = env_float("DEMO_GATEWAY_DELAY", 0.03)

MAX_MESSAGE_CHARS = env_int("MAX_MESSAGE_CHARS", 100_000)
# A socket frame carries a message as JSON (escapes can make it longer) plus a few fields.
MAX_FRAME_CHARS = env_int("MAX_FRAME_CHARS", MAX_MESSAGE_CHARS * 6 + 65_536)
# Daphne's limit on one WebSocket message, either way (bytes; chatsite.serve passes it
# on). In: every frame the page makes fits (at most MAX_FRAME_CHARS bytes: a message's
# characters take 6 bytes at most, as JSON escapes), so the app answers an oversized one
# itself; so does the fragment that shows a message sent. Out: a finished answer or a
# redrawn thread over half of it loads over HTTP instead (relay/fragments.py).
WEBSOCKET_MAX_MESSAGE_BYTES = env_int("WEBSOCKET_MAX_MESSAGE_BYTES", max(MAX_FRAME_CHARS, 1024 * 1024))
if WEBSOCKET_MAX_MESSAGE_BYTES < MAX_FRAME_CHARS:
    raise ImproperlyConfigured(
        f"WEBSOCKET_MAX_MESSAGE_BYTES ({WEBSOCKET_MAX_MESSAGE_BYTES}) must be at least MAX_FRAME_CHARS "
        f"({MAX_FRAME_CHARS}): every message the page may send must fit in one socket message."
    )
SOCKET_HTML_MAX_BYTES = WEBSOCKET_MAX_MESSAGE_BYTES // 2
# A client that stops reading is dropped once this many bytes wait for it, or once it
# has read nothing for SOCKET_STALLED_AFTER seconds (chatsite/slow_clients.py).
SOCKET_SEND_BUFFER_MAX = env_int("SOCKET_SEND_BUFFER_MAX", 4 * WEBSOCKET_MAX_MESSAGE_BYTES)
SOCKET_STALLED_AFTER = env_float("SOCKET_STALLED_AFTER", 15.0)
# `manage.py runserver` (Daphne's) reads these names.
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = WEBSOCKET_MAX_MESSAGE_BYTES
# Answers longer than this are shown as their plain text: formatting takes time in
# proportion (a second per 200,000 characters, and every page waits meanwhile).
RENDER_MAX_CHARS = env_int("RENDER_MAX_CHARS", 100_000)
MAX_CONCURRENT_GENERATIONS = env_int("MAX_CONCURRENT_GENERATIONS", 2)
MAX_MESSAGES_PER_MINUTE = env_int("MAX_MESSAGES_PER_MINUTE", 30)
# Automatic retries while nothing has arrived (connection refused, timeout, 5xx).
UPSTREAM_RETRIES = env_int("UPSTREAM_RETRIES", 2)
UPSTREAM_RETRY_BACKOFF = env_float("UPSTREAM_RETRY_BACKOFF", 1.0)
# Coalescing window for deltas sent to the browser, and the checkpoint interval.
STREAM_FLUSH_INTERVAL = env_float("STREAM_FLUSH_INTERVAL", 0.04)
# A process that falls behind (its event loop lags) gathers deltas for longer, up to
# this, so every stream keeps moving instead of queueing (relay/pacing.py).
STREAM_FLUSH_MAX_INTERVAL = env_float("STREAM_FLUSH_MAX_INTERVAL", 0.15)
# Answers are formatted as they stream (relay/live.py); the open last block is
# re-rendered at most this often. LIVE_RENDERING=0 streams plain text until the end.
LIVE_RENDERING = env_bool("LIVE_RENDERING", True)
LIVE_RENDER_INTERVAL = env_float("LIVE_RENDER_INTERVAL", 0.15)
STREAM_CHECKPOINT_INTERVAL = env_float("STREAM_CHECKPOINT_INTERVAL", 1.0)
# A running answer is touched this often even when silent; one untouched for
# STREAM_ORPHAN_AFTER seconds belongs to a process that died (with several processes).
STREAM_HEARTBEAT_INTERVAL = env_float("STREAM_HEARTBEAT_INTERVAL", 5.0)
STREAM_ORPHAN_AFTER = env_float("STREAM_ORPHAN_AFTER", 30.0)
# How long a (re)connecting socket waits for the running generation's text so far.
STREAM_CATCH_UP_TIMEOUT = env_float("STREAM_CATCH_UP_TIMEOUT", 3.0)

# Image models: the largest image kept (bytes), and how long fetching one given as a URL may take.
MAX_IMAGE_BYTES = env_int("MAX_IMAGE_BYTES", 10 * 1024 * 1024)
IMAGE_FETCH_TIMEOUT = env_float("IMAGE_FETCH_TIMEOUT", 30.0)
# Images past this many in one answer are left out (the answer says how many).
MAX_IMAGES_PER_ANSWER = env_int("MAX_IMAGES_PER_ANSWER", 8)
# Image URLs must lead to public addresses; these host:port pairs may be private (a
# gateway on this machine that serves its images by URL; the tests' fake gateway).
IMAGE_FETCH_ALLOW_PRIVATE = env_host_ports("IMAGE_FETCH_ALLOW_PRIVATE")
# The upper bound a user may set for "Maximum output tokens" in a conversation's settings.
MAX_OUTPUT_TOKENS = env_int("MAX_OUTPUT_TOKENS", 65_536)
# Conversations per page of the sidebar (more load as it scrolls).
SIDEBAR_PAGE_SIZE = env_int("SIDEBAR_PAGE_SIZE", 50)

# HTTPS=1 when the site is served over TLS (usually by a proxy that sets
# X-Forwarded-Proto): secure cookies, redirects to https and HSTS.
HTTPS = env_bool("HTTPS", False)
if HTTPS:
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
