"""The PostgreSQL + Redis pass of `make test`: the whole suite again on both servers,
which also runs the tests that need them (two Daphne processes sharing one stream).

It runs when both are reachable (`.ci/services` installs and starts them on loopback),
says plainly that it skipped otherwise, and fails instead of skipping under CI=true.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/chatsite")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def main() -> int:
    missing = [
        name
        for name, url, port in (("PostgreSQL", DATABASE_URL, 5432), ("Redis", REDIS_URL, 6379))
        if not reachable(url, port)
    ]
    if missing:
        message = f"{' and '.join(missing)} not reachable: skipped the PostgreSQL + Redis pass (run .ci/services)."
        if os.environ.get("CI", "").lower() == "true":
            print(f"FAILED: {message} CI must run it.", file=sys.stderr)
            return 1
        print(f"SKIPPED: {message}")
        return 0
    print(f"PostgreSQL + Redis pass: PostgreSQL at {urlsplit(DATABASE_URL).hostname}, Redis at {REDIS_URL}", flush=True)
    env = {**os.environ, "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL}
    return subprocess.call([sys.executable, "-m", "pytest", *sys.argv[1:]], env=env)


if __name__ == "__main__":
    sys.exit(main())
