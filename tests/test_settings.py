"""Settings come from the environment and fail loudly when wrong."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FERNET_KEY = "dGVzdHMtb25seS10ZXN0cy1vbmx5LXRlc3RzLW9ubHk="


def load_settings(tmp_path, **env):
    """Import chatsite.settings in a fresh interpreter with exactly this environment."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "DEBUG", "FIELD_ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL")
        and not k.startswith("UPSTREAM_")
    }
    clean.update(DATA_DIR=str(tmp_path), ENV_FILE="")
    if "SECRET_KEY" in env:
        clean["FIELD_ENCRYPTION_KEYS"] = FERNET_KEY
    clean.update(env)
    code = (
        "import chatsite.settings as s; "
        "print(s.DEBUG, s.PORT, s.UPSTREAM_BASE_URL, s.DEMO_GATEWAY, s.CHANNEL_LAYERS['default']['BACKEND'], "
        "s.DATABASES['default']['ENGINE'])"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True)


def test_it_runs_with_defaults_when_a_secret_key_is_set(tmp_path):
    result = load_settings(tmp_path, SECRET_KEY="k")
    assert result.returncode == 0, result.stderr
    debug, port, upstream, demo, layer, engine = result.stdout.split()
    assert (debug, port, demo) == ("False", "8080", "True")
    assert upstream == "http://127.0.0.1:8080/demo-gateway/api/v1"
    assert layer == "chatsite.layers.InMemoryLayer"
    assert engine == "django.db.backends.sqlite3"


def test_it_follows_port_and_upstream(tmp_path):
    result = load_settings(tmp_path, SECRET_KEY="k", PORT="9001", UPSTREAM_BASE_URL="http://localhost:8000/api/v1/")
    assert result.returncode == 0, result.stderr
    _, port, upstream, demo, *_ = result.stdout.split()
    assert (port, upstream, demo) == ("9001", "http://localhost:8000/api/v1", "False")


def test_it_switches_to_redis_by_url(tmp_path):
    result = load_settings(tmp_path, SECRET_KEY="k", REDIS_URL="redis://127.0.0.1:6379/0")
    assert "channels_redis.pubsub.RedisPubSubChannelLayer" in result.stdout


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "k", "DEBUG": "maybe"}, "DEBUG must be 1/0 or true/false"),
        ({"SECRET_KEY": "k", "PORT": "eighty"}, "PORT must be a whole number"),
        ({"SECRET_KEY": "k", "UPSTREAM_BASE_URL": "localhost:8000"}, "UPSTREAM_BASE_URL must start with http"),
        ({"SECRET_KEY": "k", "UPSTREAM_READ_TIMEOUT": "long"}, "UPSTREAM_READ_TIMEOUT must be a number"),
    ],
)
def test_it_fails_loudly_on_bad_configuration(tmp_path, env, message):
    result = load_settings(tmp_path, **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_it_allows_a_missing_secret_key_only_in_debug(tmp_path):
    result = load_settings(tmp_path, DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_it_requires_encryption_keys_without_debug(tmp_path):
    result = load_settings(tmp_path, SECRET_KEY="k", FIELD_ENCRYPTION_KEYS="")
    assert result.returncode != 0 and "FIELD_ENCRYPTION_KEYS is not set" in result.stderr


def test_it_refuses_a_malformed_encryption_key(tmp_path):
    result = load_settings(tmp_path, SECRET_KEY="k", FIELD_ENCRYPTION_KEYS=f"{FERNET_KEY},not-a-key")
    assert result.returncode != 0 and "key number 2 is not a Fernet key" in result.stderr


def test_it_reads_dotenv_but_the_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"SECRET_KEY=from-file\nFIELD_ENCRYPTION_KEYS={FERNET_KEY}\nPORT=9100\n")
    result = load_settings(tmp_path, ENV_FILE=str(env_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "9100"
    result = load_settings(tmp_path, ENV_FILE=str(env_file), PORT="9200")
    assert result.stdout.split()[1] == "9200"


def test_localenv_creates_missing_secrets_once(tmp_path):
    from chatsite.localenv import ensure

    env_file = tmp_path / ".env"
    env_file.write_text("UPSTREAM_BASE_URL=http://localhost:8000/api/v1")
    assert ensure(env_file) == ["SECRET_KEY", "FIELD_ENCRYPTION_KEYS"]
    first = env_file.read_text()
    assert first.startswith("UPSTREAM_BASE_URL=http://localhost:8000/api/v1\n")
    assert ensure(env_file) == []
    assert env_file.read_text() == first  # never replaced: stored keys stay readable
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
