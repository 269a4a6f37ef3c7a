"""The relay benchmark: how many live streams one process relays, and what it adds.

    .venv/bin/python bench/relay.py [--sizes 1,100,300,500,1000] [--seconds 10] [--rate 20]
        [--starts burst,spread] [--render live,plain] [--redis] [--saturation]
        [--json FILE] [--no-dashboard]

In one run it starts a fast fake gateway on a real socket (its own process; every chunk
carries its emit time, and the first one also when the request arrived), and the app
under Daphne as `make run` does (SQLite and the in-memory channel layer; with `--redis`,
two Daphne processes on Redis and PostgreSQL from TEST_DATABASE_URL / TEST_REDIS_URL,
the clients spread over both). For each N, and each way of starting N answers, it

- opens N authenticated WebSocket clients speaking the page's protocol, which each send
  one message and record when each delta arrives;
- reads the same streams, N at once and started the same way, with a bare httpx-sse
  client straight from the gateway: the limit any relay is measured against.

The N answers start two ways: "burst", all at once (as after a deploy or a network
blip), and "spread", evenly over one second (as users arrive). The app runs twice, with
live rendering and with plain text (--render). One table per rendering, one row per N
and start:

    relay p50, p99   emit -> client latency of every chunk through the app; a chunk
                     counts when its text first shows on the socket
    p99 steady       the same p99 over the chunks emitted after every stream had started
                     and before any had ended; a p99 far above it means the start or end
                     bursts (admission and storing, final writes and renders) make the tail
    bare ...         the same three for the bare reader, in the same run
    TTFT p50, p99    time to first token: from the client's send of its message to the
                     first delta on its socket, less the gateway's own time to its first
                     chunk (request arrived -> first chunk emitted): what the app adds
                     before an answer shows. In "burst" rows, N answers start together.
                     (The JSON also has the bare reader's: its POST to its first event.)
    chunks/s         chunks relayed per second, first send to last answer done
    offered          chunks per second the gateway emits once every stream runs: N x rate
    CPU/chunk        the app's CPU (all its processes) per relayed chunk, the bare
                     reader's per chunk read, and their ratio
    RSS              the app's resident memory halfway through the streams

Before the first row one answer warms the app up (imports, templates, connections), so
that no row pays for it. With live rendering a second table gives, per row, the time
from a block's closing chunk to its formatted form. Answers that did not complete (a
refused socket, a stuck stream) are listed under the table. Then: memory per idle socket
and per active stream, frames and bytes per answer against the final HTML, database
queries per answer for a 500- and a 5,000-chunk answer, and (unless --no-dashboard)
bench/dashboard.py over 1,000,000 ledger rows.

--saturation adds, per rendering, the saturation point: the highest offered load at
which the app relays with p99 <= 250 ms (--saturation-p99) over all chunks and every
answer completes, answers spread over a second, streams of --saturation-seconds. N steps
up by --saturation-step (100, 200, 300, ...) until a step fails, then is bisected
between the last pass and the first failure down to a quarter of a step.

--json FILE writes the rows as JSON, one object per row with the columns above in
milliseconds and microseconds (relay_p99_steady_ms, ttft_p99_ms, chunks_per_s,
offered_chunks_per_s, relay_cpu_us_per_chunk, formatted_p99_ms, ...), and beside them
memory, wire bytes, queries per answer, the saturation search and the dashboard's
figures when bench/dashboard.py writes JSON.

Numbers are machine-dependent: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAMP = re.compile(r"\[(\d+\.\d+)\]")  # a chunk's emit time
ARRIVED = re.compile(r"\{(\d+\.\d+)\}")  # in the first chunk: when its request arrived
CLOSED = re.compile(r'beforeend:#msg-\d+-answer-done">(.*?)</div>', re.S)
DONE = re.compile(r'<article id="msg-\d+" class="message assistant status-(?!streaming)(\w+)')
ARTICLE = re.compile(r'<article id="msg-\d+" class="message assistant.*?</article>', re.S)
TICKS = os.sysconf("SC_CLK_TCK")
STARTS = ("burst", "spread")
SPREAD = 1.0  # seconds over which "spread" starts its answers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(values: list[float], q: float) -> float | None:
    """The q-th percentile of `values` (seconds) in milliseconds; None without values."""
    value = percentile(values, q)
    return None if math.isnan(value) else round(value * 1e3, 1)


def start_offsets(n: int, start: str) -> list[float]:
    """When each of n answers starts, in seconds after the first: together, or evenly over SPREAD."""
    if start == "burst":
        return [0.0] * n
    return [i * SPREAD / n for i in range(n)]


def steady(streams: list[list[tuple[float, float]]]) -> list[float]:
    """Latencies of the chunks emitted after every stream had started and before any had ended.

    `streams` holds, per stream, (emit time, latency) of each chunk.
    """
    streams = [stream for stream in streams if stream]
    if not streams:
        return []
    begin = max(min(emitted for emitted, _ in stream) for stream in streams)
    end = min(max(emitted for emitted, _ in stream) for stream in streams)
    return [latency for stream in streams for emitted, latency in stream if begin <= emitted <= end]


def every(streams: list[list[tuple[float, float]]]) -> list[float]:
    return [latency for stream in streams for _, latency in stream]


# --- the fake gateway (its own process) ---------------------------------------------


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def gateway_stream(writer, chunks: int, rate: float, arrived: float) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    start = time.monotonic()
    for i in range(chunks):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        # Paragraphs of 8 chunks, as answers have: live rendering closes each block once.
        end = "\\n\\n" if i % 8 == 7 else " "
        # The first chunk also says when its request arrived, so that the gateway's own
        # time to first chunk can be taken out of the time to first token.
        head = f"{{{arrived:.6f}}} " if i == 0 else ""
        event = f'{{"type": "text", "name": "output", "content": "{head}[{time.time():.6f}] word{end}", "index": 0}}'
        writer.write(chunked(f"data: {event}\n\n".encode()))
        await writer.drain()
    final = (
        f'data: {{"final": true, "usage": {{"input_tokens": 5, "output_tokens": {chunks}, "total_tokens": {chunks + 5}}}, '
        '"cost": {"input": 1e-07, "output": 2.5e-06, "total": 2.6e-06}, "warnings": []}\n\n'
    )
    writer.write(chunked(final.encode()) + b"0\r\n\r\n")
    await writer.drain()


async def gateway_connection(reader, writer) -> None:
    try:
        while True:  # keep-alive: one request after another
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            prompt = json.loads(await reader.readexactly(length))["input"][0]["content"]
            arrived = time.time()
            options = dict(item.split("=") for item in prompt.split()[1:])
            await gateway_stream(writer, int(options["chunks"]), float(options["rate"]), arrived)
    except (asyncio.IncompleteReadError, ConnectionError, AttributeError):
        pass
    finally:
        writer.close()


async def run_gateway(port: int) -> None:
    server = await asyncio.start_server(gateway_connection, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def first_token(frame: str, now: float, sent: float) -> float | None:
    """Time to first token for the frame or event that first shows text, less the gateway's own."""
    stamps = STAMP.findall(frame)
    arrived = ARRIVED.search(frame)
    if not stamps or not arrived:
        return None
    gateway_own = min(float(stamp) for stamp in stamps) - float(arrived.group(1))
    return now - sent - gateway_own


# --- the app -------------------------------------------------------------------------


class App:
    """Daphne processes as `make run` starts them, with limits lifted for the load."""

    def __init__(
        self, workdir: Path, gateway_url: str, processes: int, database_url: str, redis_url: str, live: bool = True
    ):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "UPSTREAM_"))}
        self.env.update(
            DJANGO_SETTINGS_MODULE="chatsite.settings",
            ENV_FILE="",
            DEBUG="0",
            SECRET_KEY="bench-" + "x" * 50,
            FIELD_ENCRYPTION_KEYS="YmVuY2gtb25seS1iZW5jaC1vbmx5LWJlbmNoLW9ubHk=",
            DATA_DIR=str(workdir),
            STATIC_ROOT=str(workdir / "static"),
            UPSTREAM_BASE_URL=gateway_url,
            UPSTREAM_API_KEY="sk_bench",
            UPSTREAM_READ_TIMEOUT="60",
            MAX_CONCURRENT_GENERATIONS="1000000",
            MAX_MESSAGES_PER_MINUTE="1000000",
            LOG_LEVEL="WARNING",
            LIVE_RENDERING="1" if live else "0",
        )
        self.env.pop("DATABASE_URL", None)
        self.env.pop("REDIS_URL", None)
        if database_url:
            self.env["DATABASE_URL"] = database_url
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.ports = [free_port() for _ in range(processes)]
        self.processes: list[subprocess.Popen] = []
        self.log = open(workdir / "daphne.log", "w")

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def prepare(self, users: int) -> tuple[list[str], int]:
        """Migrate, then make `users` users with a session each; returns their cookies."""
        self.manage("migrate", "--noinput", "-v0")
        self.manage("collectstatic", "--noinput", "-v0")
        script = f"""
import json
from django.contrib.auth import get_user_model, BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from conversations.models import GatewayModel, SiteSettings
User = get_user_model()
User.objects.bulk_create([User(username=f"bench{{i}}", password="!") for i in range({users})], ignore_conflicts=True)
SiteSettings.objects.filter(pk=SiteSettings.load().pk).update(allow_shared_key=True)
cookies = []
for user in User.objects.filter(username__startswith="bench").order_by("id")[:{users}]:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    cookies.append("sessionid=" + session.session_key)
print(json.dumps({{"cookies": cookies, "model": GatewayModel.objects.get(model_name="gemini-2.0-flash").pk}}))
"""
        data = json.loads(self.manage("shell", "-c", script).strip().splitlines()[-1])
        return data["cookies"], data["model"]

    def start(self) -> None:
        for port in self.ports:
            command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"]
            self.processes.append(
                subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
            )
        for port in self.ports:
            wait_for_port(port)

    def cpu_seconds(self) -> float:
        total = 0
        for process in self.processes:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / TICKS

    def rss_bytes(self) -> int:
        total = 0
        for process in self.processes:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.log.close()


# --- the clients ---------------------------------------------------------------------


class Client:
    """One browser tab: a socket with the page's protocol, sending one message."""

    def __init__(self, url: str, cookie: str, origin: str):
        self.url, self.cookie, self.origin = url, cookie, origin
        self.chunks: list[tuple[float, float]] = []  # (emit time, latency) per chunk, when it first shows
        self.ttft: float | None = None
        self.formatted: list[float] = []  # a block's closing chunk to its formatted form
        self.frames = 0
        self.bytes = 0
        self.final_html = 0
        self.completed = False
        self.error = ""
        self.seen: set[str] = set()
        self.socket = None

    async def connect(self):
        import websockets

        try:
            self.socket = await websockets.connect(
                self.url,
                additional_headers={"Cookie": self.cookie, "Origin": self.origin},
                max_size=None,
                open_timeout=60,
                ping_interval=None,
            )
        except Exception as error:  # a refused socket is an answer that did not complete
            self.error = f"connect: {error!r}"

    async def chat(self, model: int, chunks: int, rate: float, delay: float, timeout: float) -> None:
        if self.socket is None:
            return
        await asyncio.sleep(delay)
        try:
            await asyncio.wait_for(self.send_and_read(model, chunks, rate), timeout)
        except Exception as error:  # a dropped or stuck answer did not complete
            self.error = f"chat: {error!r}"

    async def send_and_read(self, model: int, chunks: int, rate: float) -> None:
        message = {
            "action": "send",
            "message": f"bench chunks={chunks} rate={rate}",
            "model": model,
            "conversation": "",
        }
        sent = time.time()
        await self.socket.send(json.dumps(message))
        async for frame in self.socket:
            now = time.time()
            self.frames += 1
            self.bytes += len(frame.encode())
            done = DONE.search(frame)
            if done:
                self.completed = done.group(1) == "complete"
                article = ARTICLE.search(frame)
                self.final_html = len(article.group(0).encode()) if article else 0
                return
            if self.ttft is None:
                self.ttft = first_token(frame, now, sent)
            # A block closes when the next one's first chunk arrives (emitted 1/rate after
            # the block's last); its formatted form is the closed blocks appended.
            for block in CLOSED.findall(frame):
                stamps = [float(stamp) for stamp in STAMP.findall(block)]
                if stamps:
                    self.formatted.append(now - max(stamps) - 1 / rate)
            # A stamp counts when it first shows: as plain text, in a closed block, or in
            # the open block (whose later renders show it again).
            for stamp in STAMP.findall(frame):
                if stamp not in self.seen:
                    self.seen.add(stamp)
                    self.chunks.append((float(stamp), now - float(stamp)))

    async def close(self):
        if self.socket is not None:
            await self.socket.close()


async def relay_phase(app: App, cookies: list[str], model: int, n: int, chunks: int, rate: float, start: str) -> dict:
    # Each socket's Origin is its own process's (port included), as for a page it served.
    ports = [app.ports[i % len(app.ports)] for i in range(n)]
    clients = [
        Client(f"ws://127.0.0.1:{port}/ws/chat/", cookie, f"http://127.0.0.1:{port}")
        for port, cookie in zip(ports, cookies, strict=False)
    ]
    for first in range(0, n, 50):  # connect in batches, like tabs opening over a moment
        await asyncio.gather(*(c.connect() for c in clients[first : first + 50]))
    rss_before = app.rss_bytes()
    cpu_before, wall_before = app.cpu_seconds(), time.monotonic()
    sampler = asyncio.create_task(sample_rss(app, chunks / rate / 2))
    timeout = chunks / rate + 60  # an overloaded app is slow, not stuck; past this it is stuck
    delays = start_offsets(n, start)
    await asyncio.gather(
        *(c.chat(model, chunks, rate, delay, timeout) for c, delay in zip(clients, delays, strict=True))
    )
    wall = time.monotonic() - wall_before
    cpu = app.cpu_seconds() - cpu_before
    rss_mid = await sampler
    await asyncio.gather(*(c.close() for c in clients))
    streams = [c.chunks for c in clients]
    return {
        "streams": streams,
        "chunks": sum(len(stream) for stream in streams),
        "ttft": [c.ttft for c in clients if c.ttft is not None],
        "formatted": [x for c in clients for x in c.formatted],
        "completed": sum(c.completed for c in clients),
        "errors": sorted({c.error for c in clients if c.error}),
        "wall": wall,
        "cpu": cpu,
        "rss_before": rss_before,
        "rss_mid": rss_mid,
        "frames": sum(c.frames for c in clients) / n,
        "bytes": sum(c.bytes for c in clients) / n,
        "final_html": sum(c.final_html for c in clients) / n,
    }


async def sample_rss(app: App, after: float) -> int:
    await asyncio.sleep(after)
    return app.rss_bytes()


async def bare_phase(gateway_url: str, n: int, chunks: int, rate: float, start: str) -> dict:
    import httpx
    from httpx_sse import aconnect_sse

    streams: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    ttft: list[float] = []

    async def read(i: int, client: httpx.AsyncClient, delay: float) -> None:
        await asyncio.sleep(delay)
        body = {
            "service_name": "s",
            "model_name": "m",
            "input": [{"type": "text", "name": "input", "content": f"bench chunks={chunks} rate={rate}"}],
        }
        sent = time.time()
        async with aconnect_sse(client, "POST", gateway_url + "/generate/stream", json=body) as source:
            async for event in source.aiter_sse():
                now = time.time()
                data = json.loads(event.data)
                if "content" in data:
                    if not streams[i]:
                        first = first_token(data["content"], now, sent)
                        if first is not None:
                            ttft.append(first)
                    emitted = float(STAMP.search(data["content"]).group(1))
                    streams[i].append((emitted, now - emitted))

    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60), limits=limits) as client:
        cpu_before = time.process_time()
        await asyncio.gather(*(read(i, client, delay) for i, delay in enumerate(start_offsets(n, start))))
        cpu = time.process_time() - cpu_before
    return {"streams": streams, "chunks": sum(len(stream) for stream in streams), "cpu": cpu, "ttft": ttft}


async def idle_sockets(app: App, cookies: list[str], n: int) -> float:
    """Resident memory per connected, idle socket."""
    clients = [
        Client(f"ws://127.0.0.1:{app.ports[0]}/ws/chat/", cookies[i], f"http://127.0.0.1:{app.ports[0]}")
        for i in range(n)
    ]
    before = app.rss_bytes()
    for start in range(0, n, 50):
        await asyncio.gather(*(c.connect() for c in clients[start : start + 50]))
    await asyncio.sleep(1)
    after = app.rss_bytes()
    await asyncio.gather(*(c.close() for c in clients))
    return (after - before) / n


# --- database queries per answer (in-process, through the real consumer) ------------


def count_queries(gateway_url: str) -> dict[int, int]:
    """Queries for one answer of 500 and one of 5,000 chunks, counted at the driver."""
    workdir = Path(tempfile.mkdtemp(prefix="chatsite-bench-queries-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.conf import settings

    settings.UPSTREAM_BASE_URL = gateway_url
    settings.MAX_MESSAGES_PER_MINUTE = settings.MAX_CONCURRENT_GENERATIONS = 10**6
    from django.core.management import call_command
    from django.db.backends.signals import connection_created

    call_command("migrate", verbosity=0)
    counter = {"n": 0}

    def count(sql: str) -> None:
        # Statements SQLite runs inside a trigger or the full-text index start with "--":
        # the index's own bookkeeping, not queries the app sends.
        if not sql.startswith("--"):
            counter["n"] += 1

    def on_connection(sender, connection, **kwargs):
        connection.connection.set_trace_callback(count)

    connection_created.connect(on_connection)
    from django.db import connections

    connections.close_all()  # reconnect with the counter installed

    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model

    from conversations.models import GatewayModel, SiteSettings
    from tests.chat import no_generation_left, open_socket, until_done

    async def one(chunks: int) -> int:
        user = await sync_to_async(lambda: get_user_model().objects.create_user(f"q{chunks}"))()
        model = await sync_to_async(lambda: GatewayModel.objects.get(model_name="gemini-2.0-flash").pk)()
        socket = await open_socket(user)
        counter["n"] = 0
        await socket.send_to(
            text_data=json.dumps(
                {"action": "send", "message": f"bench chunks={chunks} rate=2000", "model": model, "conversation": ""}
            )
        )
        await until_done(socket, timeout=60)
        await no_generation_left()
        queries = counter["n"]
        await socket.disconnect()
        return queries

    async def both():
        await sync_to_async(
            lambda: SiteSettings.objects.filter(pk=SiteSettings.load().pk).update(allow_shared_key=True)
        )()
        return {chunks: await one(chunks) for chunks in (500, 5000)}

    return asyncio.run(both())


# --- the rows -------------------------------------------------------------------------


def relay_row(relay: dict, n: int, start: str, render: str, rate: float) -> dict:
    """The relay's half of a row, as --json writes it."""
    latencies = every(relay["streams"])
    return {
        "render": render,
        "n": n,
        "start": start,
        "relay_p50_ms": ms(latencies, 0.5),
        "relay_p99_ms": ms(latencies, 0.99),
        "relay_p99_steady_ms": ms(steady(relay["streams"]), 0.99),
        "ttft_p50_ms": ms(relay["ttft"], 0.5),
        "ttft_p99_ms": ms(relay["ttft"], 0.99),
        "chunks_per_s": round(relay["chunks"] / relay["wall"], 1),
        "offered_chunks_per_s": round(n * rate, 1),
        "relay_cpu_us_per_chunk": round(relay["cpu"] / max(relay["chunks"], 1) * 1e6, 1),
        "rss_mb": round(relay["rss_mid"] / 2**20, 1),
        "answers": n,
        "answers_completed": relay["completed"],
        "formatted_p50_ms": ms(relay["formatted"], 0.5),
        "formatted_p99_ms": ms(relay["formatted"], 0.99),
        "formatted_blocks": len(relay["formatted"]),
    }


def bare_row(bare: dict) -> dict:
    """The bare reader's half of a row."""
    return {
        "bare_p50_ms": ms(every(bare["streams"]), 0.5),
        "bare_p99_ms": ms(every(bare["streams"]), 0.99),
        "bare_p99_steady_ms": ms(steady(bare["streams"]), 0.99),
        "bare_ttft_p50_ms": ms(bare["ttft"], 0.5),
        "bare_ttft_p99_ms": ms(bare["ttft"], 0.99),
        "bare_cpu_us_per_chunk": round(bare["cpu"] / max(bare["chunks"], 1) * 1e6, 1),
    }


class Table:
    """A markdown table printed a row at a time, each column as wide as its title."""

    def __init__(self, *titles: str):
        self.widths = [max(len(title), 7) for title in titles]
        self.row(*titles)
        print("|" + "|".join("-" * (width + 1) + ":" for width in self.widths) + "|")

    def row(self, *cells: str) -> None:
        print(
            "| " + " | ".join(cell.rjust(width) for cell, width in zip(cells, self.widths, strict=True)) + " |",
            flush=True,
        )


def show_ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} ms" if value < 10 else f"{value:,.0f} ms"


def show_us(value: float) -> str:
    return f"{value:,.0f} µs"


def latency_table() -> Table:
    return Table(
        "N",
        "start",
        "relay p50",
        "relay p99",
        "p99 steady",
        "bare p50",
        "bare p99",
        "bare p99 steady",
        "TTFT p50",
        "TTFT p99",
        "chunks/s",
        "offered",
        "CPU/chunk relay",
        "bare",
        "ratio",
        "RSS",
    )


def print_latency_row(table: Table, row: dict) -> None:
    table.row(
        f"{row['n']:,}",
        row["start"],
        show_ms(row["relay_p50_ms"]),
        show_ms(row["relay_p99_ms"]),
        show_ms(row["relay_p99_steady_ms"]),
        show_ms(row["bare_p50_ms"]),
        show_ms(row["bare_p99_ms"]),
        show_ms(row["bare_p99_steady_ms"]),
        show_ms(row["ttft_p50_ms"]),
        show_ms(row["ttft_p99_ms"]),
        f"{row['chunks_per_s']:,.0f}",
        f"{row['offered_chunks_per_s']:,.0f}",
        show_us(row["relay_cpu_us_per_chunk"]),
        show_us(row["bare_cpu_us_per_chunk"]),
        f"{row['cpu_ratio']:.2f}",
        f"{row['rss_mb']:,.0f} MB",
    )


def print_formatted(rows: list[dict]) -> None:
    """With live rendering: from a block's closing chunk to its formatted form, per row."""
    rows = [row for row in rows if row["formatted_blocks"]]
    if not rows:
        return
    print("\nA block's closing chunk to its formatted form:\n")
    table = Table("N", "start", "p50", "p99", "blocks")
    for row in rows:
        table.row(
            f"{row['n']:,}",
            row["start"],
            show_ms(row["formatted_p50_ms"]),
            show_ms(row["formatted_p99_ms"]),
            f"{row['formatted_blocks']:,}",
        )


# --- the saturation point -----------------------------------------------------------


def find_saturation(app: App, cookies: list[str], model: int, render: str, args) -> dict:
    """The highest offered load relayed with p99 <= --saturation-p99 and every answer completed.

    Steps N up by --saturation-step until a step fails (or N passes --saturation-max),
    then bisects between the last pass and the first failure down to a quarter step.
    """
    chunks = int(args.saturation_seconds * args.rate)
    step = args.saturation_step
    print(
        f"\nSaturation point ({render}): relay p99 <= {args.saturation_p99:g} ms and every answer completed, "
        f"answers spread over {SPREAD:g} s, {chunks} chunks each:\n"
    )
    table = Table("N", "offered", "chunks/s", "relay p99", "p99 steady", "TTFT p99", "completed", "passes")
    runs: list[dict] = []

    def passes(n: int) -> bool:
        relay = asyncio.run(relay_phase(app, cookies, model, n, chunks, args.rate, "spread"))
        row = relay_row(relay, n, "spread", render, args.rate)
        p99 = row["relay_p99_ms"]
        row["passes"] = p99 is not None and p99 <= args.saturation_p99 and relay["completed"] == n
        row["seconds"] = args.saturation_seconds
        runs.append(row)
        table.row(
            f"{n:,}",
            f"{row['offered_chunks_per_s']:,.0f}",
            f"{row['chunks_per_s']:,.0f}",
            show_ms(p99),
            show_ms(row["relay_p99_steady_ms"]),
            show_ms(row["ttft_p99_ms"]),
            f"{relay['completed']}/{n}",
            "yes" if row["passes"] else "no",
        )
        return row["passes"]

    good, bad = 0, 0
    n = step
    while n <= args.saturation_max:
        if not passes(n):
            bad = n
            break
        good, n = n, n + step
    while bad and bad - good > max(step // 4, 1):
        middle = (good + bad) // 2
        if passes(middle):
            good = middle
        else:
            bad = middle
    best = next((row for row in runs if row["n"] == good and row["passes"]), None)
    if best is None:
        print(f"\nSaturation point ({render}): not reached; even {runs[0]['n']} streams fail.")
    else:
        print(
            f"\nSaturation point ({render}): {best['offered_chunks_per_s']:,.0f} chunks/s offered "
            f"({good:,} streams; {best['chunks_per_s']:,.0f} relayed per second over the run, "
            f"p99 {show_ms(best['relay_p99_ms'])})"
            + (f"; {args.saturation_max:,} streams, the search's limit, still pass" if not bad else "")
        )
    return {"render": render, "point": best, "runs": runs}


# --- the report -----------------------------------------------------------------------


def run_render(app: App, render: str, args, gateway_url: str, report: dict) -> None:
    """One table: the relay at each size and start, against the bare reader, with `render` on the app."""
    sizes = [int(n) for n in args.sizes.split(",")]
    starts = args.starts.split(",")
    chunks = int(args.seconds * args.rate)
    users = max(*sizes, 500, args.saturation_max if args.saturation else 0)
    cookies, model = app.prepare(users)
    app.start()
    # Before any stream, while the process is small: memory per connected idle socket.
    idle = asyncio.run(idle_sockets(app, cookies, 500))
    # One answer first, so that no row pays for the first request's imports and templates.
    asyncio.run(relay_phase(app, cookies, model, 1, 10, args.rate, "burst"))
    print(f"Answers rendered: {render}\n")
    table = latency_table()
    rows: list[dict] = []
    notes: list[str] = []
    wire = None
    per_stream = None
    for n in sizes:
        for start in starts:
            relay = asyncio.run(relay_phase(app, cookies, model, n, chunks, args.rate, start))
            bare = asyncio.run(bare_phase(gateway_url, n, chunks, args.rate, start))
            row = relay_row(relay, n, start, render, args.rate) | bare_row(bare)
            row["cpu_ratio"] = round(row["relay_cpu_us_per_chunk"] / max(row["bare_cpu_us_per_chunk"], 0.1), 2)
            rows.append(row)
            print_latency_row(table, row)
            if relay["completed"] < n:
                notes.append(f"N={n} {start}: {relay['completed']} of {n} answers completed; {relay['errors'][:3]}")
            if n == 1 and wire is None:
                wire = relay
            if start == starts[0] and (n == 500 or (per_stream is None and n == sizes[-1])):
                per_stream = (n, (relay["rss_mid"] - relay["rss_before"]) / n)
    for note in notes:
        print(f"\nNot every answer completed: {note}")
    print_formatted(rows)
    print()
    print(f"Resident memory per idle socket (500 open): {idle / 1024:.1f} KiB")
    summary: dict = {"render": render, "idle_socket_kib": round(idle / 1024, 1)}
    if per_stream:
        print(f"Resident memory per active stream (at N={per_stream[0]}): {per_stream[1] / 1024:.1f} KiB")
        summary |= {"active_stream_kib": round(per_stream[1] / 1024, 1), "active_stream_kib_at_n": per_stream[0]}
    if wire:
        print(
            f"Per answer ({chunks} chunks): {wire['frames']:.0f} WebSocket frames, "
            f"{wire['bytes'] / 1024:.1f} KiB on the wire, final HTML {wire['final_html'] / 1024:.1f} KiB: "
            f"wire/HTML = {wire['bytes'] / max(wire['final_html'], 1):.2f}"
        )
        summary |= {
            "frames_per_answer": round(wire["frames"], 1),
            "wire_kib_per_answer": round(wire["bytes"] / 1024, 1),
            "final_html_kib": round(wire["final_html"] / 1024, 1),
            "wire_per_html": round(wire["bytes"] / max(wire["final_html"], 1), 2),
        }
    report["rows"] += rows
    report["renders"].append(summary)
    if args.saturation:
        report["saturation"].append(find_saturation(app, cookies, model, render, args))
    print()


def write_json(path: str, report: dict) -> None:
    Path(path).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,100,300,500,1000", help="numbers of concurrent streams")
    parser.add_argument("--seconds", type=float, default=10, help="length of each stream")
    parser.add_argument("--rate", type=float, default=20, help="chunks per second per stream")
    parser.add_argument(
        "--starts", default="burst,spread", help=f"burst (all at once), spread (over {SPREAD:g} s), or both"
    )
    parser.add_argument("--redis", action="store_true", help="two processes on Redis + PostgreSQL")
    parser.add_argument("--no-dashboard", action="store_true", help="skip the 1,000,000-row dashboard timing")
    parser.add_argument("--dashboard-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--render", default="live,plain", help="live (formatted while streaming), plain (LIVE_RENDERING=0), or both"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the tables as JSON to FILE")
    parser.add_argument("--saturation", action="store_true", help="also search for the saturation point")
    parser.add_argument("--saturation-step", type=int, default=100, help="streams added at each step of the search")
    parser.add_argument("--saturation-max", type=int, default=1000, help="streams at which the search stops")
    parser.add_argument("--saturation-seconds", type=float, default=5, help="length of each stream in the search")
    parser.add_argument("--saturation-p99", type=float, default=250, help="relay p99 (ms) the search allows")
    args = parser.parse_args()
    if not set(args.starts.split(",")) <= set(STARTS):
        parser.error(f"--starts takes {' and '.join(STARTS)}")
    chunks = int(args.seconds * args.rate)

    gateway_port = free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}/api/v1"
    gateway = subprocess.Popen([sys.executable, __file__, "--gateway", str(gateway_port)])
    wait_for_port(gateway_port)
    workdir = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
    database_url = redis_url = ""
    if args.redis:
        database_url = os.environ.get("TEST_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/chatsite_bench")
        redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/15"
        reset_postgres(database_url)
    machine = f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    setup = "2 Daphne processes, Redis + PostgreSQL" if args.redis else "1 Daphne process, SQLite + in-memory layer"
    print(f"chatsite relay benchmark: {setup}; {machine}; {args.rate:g} chunks/s per stream, {chunks} chunks each\n")
    report: dict = {
        "setup": setup,
        "machine": machine,
        "rate": args.rate,
        "chunks_per_answer": chunks,
        "spread_seconds": SPREAD,
        "rows": [],
        "renders": [],
        "saturation": [],
    }
    try:
        for render in args.render.split(","):
            if args.redis:
                reset_postgres(database_url)
            (workdir / render).mkdir()
            app = App(workdir / render, gateway_url, 2 if args.redis else 1, database_url, redis_url, render == "live")
            try:
                run_render(app, render, args, gateway_url, report)
            finally:
                app.stop()
        queries = run_queries(gateway_url)
    finally:
        gateway.terminate()
    print(f"Database queries per answer: {queries['500']} for 500 chunks, {queries['5000']} for 5,000 chunks")
    report["queries_per_answer"] = queries
    if args.json:
        write_json(args.json, report)
    if args.no_dashboard:
        return 0
    print(f"\nCost dashboard over {args.dashboard_rows:,} ledger rows (bench/dashboard.py):", flush=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    if args.redis:
        env["DATABASE_URL"] = database_url
        reset_postgres(database_url)
    ok = run_dashboard(args, env, report)
    if args.json:
        write_json(args.json, report)
    return 0 if ok else 1


def run_dashboard(args, env: dict, report: dict) -> bool:
    """bench/dashboard.py as its own process; its figures join the JSON when it writes JSON too."""
    script = str(ROOT / "bench" / "dashboard.py")
    command = [sys.executable, script, "--rows", str(args.dashboard_rows), "--runs", "5"]
    figures = None
    if args.json:
        # Only newer versions of dashboard.py take --json; an older one still prints its table.
        usage = subprocess.run([sys.executable, script, "--help"], env=env, capture_output=True, text=True).stdout
        if "--json" in usage:
            figures = Path(tempfile.mkdtemp(prefix="chatsite-bench-dashboard-")) / "dashboard.json"
            command += ["--json", str(figures)]
    result = subprocess.run(command, env=env)
    if result.returncode:
        print(f"bench/dashboard.py failed (exit status {result.returncode}); the relay figures above stand.")
        return False
    if figures:
        try:
            report["dashboard"] = json.loads(figures.read_text())
        except (OSError, ValueError) as error:
            print(f"bench/dashboard.py's JSON could not be read ({error}); it is left out of {args.json}.")
    return True


def run_queries(gateway_url: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--count-queries", gateway_url], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode:
        raise RuntimeError(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def reset_postgres(url: str) -> None:
    import dj_database_url

    from tests.browser import admin_connection

    name = dj_database_url.parse(url)["NAME"]
    with admin_connection(url) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--gateway":
        asyncio.run(run_gateway(int(sys.argv[2])))
    elif len(sys.argv) == 3 and sys.argv[1] == "--count-queries":
        print(json.dumps(count_queries(sys.argv[2])))
    else:
        sys.exit(main())
