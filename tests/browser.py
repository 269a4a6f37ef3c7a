"""Runs the app as `make run` does (migrate, collectstatic, Daphne, DEBUG=0) for browser tests."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.accounts import PASSWORD

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


_redis_databases = iter(range(1, 16))  # the test process itself uses Redis database 0


class AppServer:
    """One app process. On the PostgreSQL + Redis pass it gets a database of its own and
    a Redis database of its own (unless `share_with` names a server to share both with)."""

    def __init__(self, data_dir: Path, upstream_base_url: str | None = None, share_with: AppServer | None = None):
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
        self.created_database = None
        if share_with is not None:
            for name in ("DATABASE_URL", "REDIS_URL", "DATA_DIR", "STATIC_ROOT", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS"):
                if name in share_with.env:
                    self.env[name] = share_with.env[name]
        else:
            if os.environ.get("DATABASE_URL", "").startswith("postgres"):
                self.env["DATABASE_URL"] = self.created_database = _create_database(
                    os.environ["DATABASE_URL"], self.port
                )
            if os.environ.get("REDIS_URL"):
                self.env["REDIS_URL"] = os.environ["REDIS_URL"].rsplit("/", 1)[0] + f"/{next(_redis_databases)}"
        self.log = open(data_dir / f"daphne-{self.port}.log", "w")
        self.process = None

    def manage(self, *args):
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True)

    def start(self, migrate: bool = True) -> AppServer:
        if migrate:
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
        if self.created_database:
            _drop_database(self.created_database)


def admin_connection(url: str):
    """A connection to the server of `url`'s database, outside it (to create or drop it)."""
    import dj_database_url
    import psycopg

    db = dj_database_url.parse(url)
    return psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    )


def _create_database(url: str, port: int) -> str:
    name = f"chatsite_app_{port}"
    with admin_connection(url) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}"


def _drop_database(url: str) -> None:
    with admin_connection(url) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


# --- pages and the steps every browser test takes -----------------------------------

_usernames = (f"user{i}" for i in itertools.count(1))


def open_page(browser, **options):
    """A fresh browser context and page, and the problems it reports: a broken
    Content-Security-Policy (no inline script is allowed), a script error, a dialog."""
    context = browser.new_context(accept_downloads=True, **options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems = []
    page.on("console", lambda m: m.type == "error" and "Content Security Policy" in m.text and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    return context, page, problems


def sign_up(page, server, username: str | None = None) -> str:
    """A new account (a fresh name unless one is given), through the sign-up page."""
    from playwright.sync_api import expect

    page.goto(server.url + "/accounts/signup/")
    username = username or next(_usernames)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_label("Message")).to_be_visible()
    return username


def log_in(page, server, username: str) -> None:
    page.goto(server.url + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def add_key(page, server, label: str, secret: str) -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/")
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Label").fill(label)
    page.get_by_label("API key").fill(secret)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text(f"Saved “{label}”")
    page.get_by_role("link", name="Chats").click()
