"""Runs the app as `make run` does (migrate, collectstatic, Daphne, DEBUG=0) for browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium():
    """Browser tests skip only on a developer machine without Chromium; never in CI."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is missing: .ci/run must install Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    def __init__(self, data_dir: Path, upstream_base_url: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("UPSTREAM_", "DJANGO_", "DATABASE_URL", "REDIS_URL", "FIELD_ENCRYPTION"))
        }
        self.env.update(
            DJANGO_SETTINGS_MODULE="chatsite.settings",
            ENV_FILE="",
            SECRET_KEY="browser-tests-only",
            FIELD_ENCRYPTION_KEYS="YnJvd3Nlci10ZXN0cy1vbmx5LWJyb3dzZXItdGVzdHM=",
            DEBUG="0",
            DATA_DIR=str(data_dir),
            STATIC_ROOT=str(data_dir / "static"),
            PORT=str(self.port),
            DEMO_GATEWAY_DELAY="0.01",
        )
        if upstream_base_url:
            self.env["UPSTREAM_BASE_URL"] = upstream_base_url
            self.env["UPSTREAM_API_KEY"] = "sk_browser_test"
        self.log = open(data_dir / "daphne.log", "w")
        self.process = None

    def manage(self, *args):
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True)

    def start(self) -> AppServer:
        self.manage("migrate", "--noinput", "--verbosity", "0")
        self.manage("collectstatic", "--noinput", "--verbosity", "0")
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "chatsite.asgi:application"]
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/accounts/login/", timeout=1)
                return self
            except httpx.TransportError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Daphne did not start; see {self.log.name}")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
