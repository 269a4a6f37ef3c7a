"""The shared HTTP client (one pool per event loop), and the request bodies it sends."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import weakref
from collections.abc import AsyncIterator, Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from conversations.gateway.errors import ErrorKind, GatewayError, human_size

# --- The shared client -------------------------------------------------------------

# One connection per live stream: httpx's default pool (100 connections) would make the
# 101st concurrent answer wait for a free one, and time out after the pool timeout.
# aiohttp's connector (_Transport) takes the total and the keep-alive expiry; it has no
# cap on idle connections, which close after the expiry instead.
LIMITS = httpx.Limits(max_connections=2000)

# One client per event loop: a client's pooled connections belong to the loop that
# opened them, so sharing one across loops (tests, async_to_sync) would break.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def default_timeout(read: float = 120.0) -> httpx.Timeout:
    """10 s to connect/write/get a pooled connection; `read` is the longest silence
    allowed between chunks (thinking models can be quiet for a long time)."""
    return httpx.Timeout(10.0, read=read)


def no_cookies() -> CookieJar:
    """A cookie jar that keeps nothing. The shared client serves every user: a cookie the
    gateway set during alice's request would otherwise go out with bob's."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def get_client(timeout: httpx.Timeout | None = None) -> httpx.AsyncClient:
    """The running loop's shared client, created on first use.

    `timeout` only applies when the client is created. A closed client is replaced.
    """
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = _Client(timeout=timeout or default_timeout(), limits=LIMITS, cookies=no_cookies())
        _clients[loop] = client
    return client


# --- aiohttp under httpx -------------------------------------------------------------
# httpx's own transport parses HTTP in pure Python (httpcore, h11, anyio), most of the
# CPU that reading 100 streams took. httpx-aiohttp puts aiohttp's C parser under the
# same httpx API: about half the CPU per chunk read (stream_generate, 100 streams at 20
# chunks/s). httpx still does timeouts, redirects (off), cookies and decoding.


class _Client(httpx.AsyncClient):
    """An httpx client on `_Transport`, proxies from the environment included (as
    httpx's own would: passing `transport=` would turn them off)."""

    def _init_transport(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = LIMITS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> httpx.AsyncBaseTransport:
        return transport or _Transport(verify=verify, cert=cert, trust_env=trust_env, limits=limits)

    def _init_proxy_transport(
        self,
        proxy: httpx.Proxy,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = LIMITS,
    ) -> httpx.AsyncBaseTransport:
        return _Transport(verify=verify, cert=cert, trust_env=trust_env, limits=limits, proxy=proxy)


class _Transport(AiohttpTransport):
    """httpx-aiohttp's transport, with an aiohttp session that keeps no cookies either,
    and aiohttp's failures raised as the httpx errors that httpcore raises (the
    package's own mapping calls a refused or reset connection a connect timeout, and
    lets a malformed answer through as an aiohttp error)."""

    def get_client(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry or 0,
            ssl=self.ssl_context,  # httpx's CA bundle, as before
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # httpx has made credentials in the URL an Authorization header already; aiohttp
        # refuses a request that has both.
        url = request.url
        request.url = url.copy_with(username=None, password=None) if url.userinfo else url
        try:
            with _httpx_errors():
                response = await super().handle_async_request(request)
        finally:
            request.url = url
        response.stream = _Body(response.stream)
        return response


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        with _httpx_errors():
            await self._stream.aclose()


# First match wins: the narrower classes come first.
_AIOHTTP_ERRORS: list[tuple[type[Exception], type[httpx.TransportError]]] = [
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # connecting, or waiting for a pooled connection
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),  # silence longer than the read timeout
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # a body cut short
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # not HTTP
    (aiohttp.ClientConnectionError, httpx.ReadError),  # reset
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientError, httpx.TransportError),
]


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except (aiohttp.ClientError, httpx.TransportError) as exc:
        cause = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
        if not isinstance(cause, aiohttp.ClientError):
            raise
        kind = next(kind for aiohttp_kind, kind in _AIOHTTP_ERRORS if isinstance(cause, aiohttp_kind))
        raise kind(str(cause)) from cause


async def read_capped(response: httpx.Response, max_bytes: int | None, what: str) -> bytes:
    """The body, refused with "too_large" as soon as it passes `max_bytes`."""
    declared = response.headers.get("content-length", "")
    if max_bytes is not None and declared.isdigit() and int(declared) > max_bytes:
        raise GatewayError(
            ErrorKind.TOO_LARGE, f"{what} is {human_size(int(declared))}, over the {human_size(max_bytes)} limit."
        )
    chunks, total = [], 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise GatewayError(ErrorKind.TOO_LARGE, f"{what} is over the {human_size(max_bytes)} limit.")
        chunks.append(chunk)
    return b"".join(chunks)


# --- Request bodies --------------------------------------------------------------


def _text_item(name: str, text: str) -> dict:
    return {"type": "text", "name": name, "content": text}


def build_body(
    *,
    service_name: str,
    model_name: str,
    prompt: str,
    history: list[dict] | None = None,
    parameters: dict | None = None,
) -> dict:
    """The JSON body of a generate request (KNOWN), with optional keys only when given."""
    body: dict[str, Any] = {
        "service_name": service_name,
        "model_name": model_name,
        "input": [_text_item("input", prompt)],
    }
    if history:
        body["history"] = history
    if parameters:
        body["parameters"] = parameters
    return body


# ASSUMED (docs/UPSTREAM.md): the docs name only `enable_thinking`; these are our names for the others.
PARAMETER_SYSTEM_PROMPT = "system_prompt"
PARAMETER_TEMPERATURE = "temperature"
PARAMETER_MAX_OUTPUT_TOKENS = "max_output_tokens"


def build_parameters(
    *,
    enable_thinking: bool | None = None,
    system_prompt: str = "",
    temperature: float | None = None,
    max_output_tokens: int | None = None,
) -> dict | None:
    """`parameters` with only the keys given (None or "" leaves a key out), or None."""
    parameters: dict[str, Any] = {}
    if enable_thinking is not None:
        parameters["enable_thinking"] = enable_thinking  # KNOWN
    if system_prompt:
        parameters[PARAMETER_SYSTEM_PROMPT] = system_prompt
    if temperature is not None:
        parameters[PARAMETER_TEMPERATURE] = temperature
    if max_output_tokens is not None:
        parameters[PARAMETER_MAX_OUTPUT_TOKENS] = max_output_tokens
    return parameters or None


def history_turn(role: str, text: str) -> dict:
    """One earlier turn for `history`, oldest first (ASSUMED format, docs/UPSTREAM.md).

    Only the text is sent back: thinking and metadata are not part of the history.
    """
    if role == "user":
        return {"role": "user", "content": [_text_item("input", text)]}
    if role == "assistant":
        return {"role": "assistant", "content": [_text_item("output", text)]}
    raise ValueError(f"history role must be 'user' or 'assistant', not {role!r}")
