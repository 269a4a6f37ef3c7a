"""Shared fixtures: named users (alice, bob), the model catalogue, the fake gateway,
and for the browser tests the app under Daphne, Chromium and its pages."""

import pytest

from tests.accounts import make_user
from tests.fakegateway import FakeGateway


@pytest.fixture
def fake_gateway():
    """A fake generation gateway on a real socket; see tests/fakegateway.py."""
    with FakeGateway() as gateway:
        yield gateway


@pytest.fixture(scope="module")
def module_gateway():
    """One fake gateway for a module's browser tests, which share one app process."""
    with FakeGateway() as gateway:
        yield gateway


@pytest.fixture
def no_retries(settings):
    """Gateway failures fail at once (automatic retries have their own tests)."""
    settings.UPSTREAM_RETRIES = 0


@pytest.fixture
def gateway_url(fake_gateway, settings):
    """Points the app at the fake gateway."""
    settings.UPSTREAM_BASE_URL = fake_gateway.base_url
    return fake_gateway.base_url


@pytest.fixture
def alice(django_db_blocker, db_access):
    return make_user("alice")


@pytest.fixture
def bob(django_db_blocker, db_access):
    return make_user("bob")


@pytest.fixture
def db_access(request):
    """Database access for sync tests and async (transactional) tests alike."""
    marker = request.node.get_closest_marker("django_db")
    if marker and marker.kwargs.get("transaction"):
        request.getfixturevalue("transactional_db")
    else:
        request.getfixturevalue("db")


@pytest.fixture
def db_models(db_access):
    """The seeded catalogue (data migration 0002), by nickname.

    Transactional tests empty every table afterwards, so the seed runs again here.
    """
    import importlib

    from django.apps import apps

    from conversations.models import GatewayModel

    importlib.import_module("conversations.migrations.0002_seed_models").seed(apps, None)

    models = {m.model_name: m for m in GatewayModel.objects.all()}
    return {
        "flash": models["gemini-2.0-flash"],
        "thinker": models["gemini-3-pro-thinking-preview"],
        "image": models["gemini-2.5-flash-image"],
    }


@pytest.fixture
def shared_key_allowed(db_access):
    """Users without a key of their own chat with the site's key (UPSTREAM_API_KEY)."""
    from conversations.models import SiteSettings

    SiteSettings.objects.filter(pk=SiteSettings.load().pk).update(allow_shared_key=True)


@pytest.fixture(scope="module")
def app(tmp_path_factory, module_gateway):
    """The app under Daphne, as `make run` starts it, pointed at the module's fake gateway."""
    from tests.browser import AppServer

    server = AppServer(tmp_path_factory.mktemp("app"), module_gateway.base_url).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory):
    """The app as `make run` starts it: no UPSTREAM_BASE_URL, so the demo gateway answers."""
    from tests.browser import AppServer

    server = AppServer(tmp_path_factory.mktemp("demo")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright, one per module: its sync API must be gone
    before the async tests of the next module run their own event loops."""
    from tests.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium

    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A page whose test fails if it broke the CSP, raised a script error or a dialog."""
    from tests.browser import open_page

    context, page, problems = open_page(browser)
    yield page
    context.close()
    assert not problems, problems


@pytest.fixture(scope="session", autouse=True)
def _drop_stray_connections(django_db_setup, django_db_blocker):
    """Let the test database be dropped at the end of a PostgreSQL run: async tests leave
    connections open in asgiref's worker threads, which would block DROP DATABASE."""
    yield
    from django.db import connection

    if connection.vendor == "postgresql":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
