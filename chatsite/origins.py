"""Which pages may open the chat socket: the site's own, by scheme, host and port.

A browser sends the session cookie with a socket whatever page opens it, and cookies
do not care about ports: a page served from another port of the same host (another
service on the machine) or over the other scheme would get a socket as the user, read
her answers and send messages as her. Channels' AllowedHostsOriginValidator compares
host names only; here the Origin header must be one of the site's origins exactly:

- the request's own: its scheme as Django would see it (https behind a proxy when
  SECURE_PROXY_SSL_HEADER says so), the Host header's name (in ALLOWED_HOSTS) and port;
- or one of CSRF_TRUSTED_ORIGINS, matched as Django's CSRF check matches them
  ("https://*.example.com" for the subdomains).

A missing Origin is refused: browsers always send one, so only scripts lack it.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import urlsplit

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int  # a default port written out: "http://a" is "http://a:80"


class SameOriginValidator:
    """ASGI middleware: refuses a socket's handshake unless its Origin is the site's."""

    def __init__(self, application: Any) -> None:  # an ASGI app, as Channels types its middleware
        self.application = application

    async def __call__(self, scope: Any, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "websocket" and not allowed(scope):
            await WebsocketDenier()(scope, receive, send)
        else:
            await self.application(scope, receive, send)


def allowed(scope: dict[str, Any]) -> bool:
    headers = _headers(scope)
    origin = parse(headers.get("origin", ""))
    if origin is None:
        return False
    return origin == own_origin(scope, headers) or any(
        _trusted(entry, origin) for entry in settings.CSRF_TRUSTED_ORIGINS
    )


def parse(value: str) -> Origin | None:
    """An origin ("https://host[:port]", nothing more), or None."""
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError if it is no port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    if parts.path or parts.query or parts.fragment:
        return None
    return Origin(scheme, parts.hostname, port or DEFAULT_PORTS[scheme])


def own_origin(scope: dict[str, Any], headers: dict[str, str]) -> Origin | None:
    """The origin of a page this site served, as Django's own checks would see it."""
    host = headers.get("host", "")
    domain, _ = split_domain_port(host)
    # Django's fallback when ALLOWED_HOSTS is empty (DEBUG only); see HttpRequest.get_host.
    allowed_hosts = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    if not domain or not validate_host(domain, allowed_hosts):
        return None
    return parse(f"{'https' if _secure(scope, headers) else 'http'}://{host}")


def _secure(scope: dict[str, Any], headers: dict[str, str]) -> bool:
    """Over TLS, or behind a proxy that says so where the settings trust it (HTTPS=1)."""
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        name = meta_name.removeprefix("HTTP_").replace("_", "-").lower()
        if name in headers:
            return headers[name].split(",", 1)[0].strip() == secure_value
    return scope.get("scheme", "ws") in ("wss", "https")


def _trusted(entry: str, origin: Origin) -> bool:
    # Django's checks (4_0.E001) make every entry start with a scheme.
    if "://*." in entry:
        pattern = parse(entry.replace("://*.", "://", 1))
        return (
            pattern is not None
            and (pattern.scheme, pattern.port) == (origin.scheme, origin.port)
            and is_same_domain(origin.host, "." + pattern.host)
        )
    return parse(entry) == origin


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
