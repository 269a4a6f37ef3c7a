"""The relay benchmark: how many live streams one process relays, and what it adds.

    .venv/bin/python bench/relay.py [--sizes 1,100,300,500,1000] [--seconds 10] [--rate 20] [--redis]

In one run it starts a fast fake gateway on a real socket (its own process; every chunk
carries its emit time), and the app under Daphne as `make run` does (SQLite and the
in-memory channel layer; with `--redis`, two Daphne processes on Redis and PostgreSQL
from TEST_DATABASE_URL / TEST_REDIS_URL, the clients spread over both). For each N it

- opens N authenticated WebSocket clients speaking the page's protocol, which each send
  one message and record when each delta arrives (emit -> client latency per chunk);
- reads the same streams, N at once, with a bare httpx-sse client straight from the
  gateway: the limit any relay is measured against;

and prints added latency p50/p99 for both, relayed chunks/s, the app's CPU per chunk
against the bare reader's, and its resident memory. Then: memory per idle socket,
frames and bytes per answer against the final HTML, database queries per answer for a
500- and a 5,000-chunk answer, and (unless --no-dashboard) bench/dashboard.py over
1,000,000 ledger rows. Numbers are machine-dependent: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

STAMP = re.compile(r"\[(\d+\.\d+)\]")
CLOSED = re.compile(r'beforeend:#msg-\d+-answer-done">(.*?)</div>', re.S)
DONE = re.compile(r'<article id="msg-\d+" class="message assistant status-(?!streaming)')
ARTICLE = re.compile(r'<article id="msg-\d+" class="message assistant.*?</article>', re.S)
TICKS = os.sysconf("SC_CLK_TCK")


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


# --- the fake gateway (its own process) ---------------------------------------------


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def gateway_stream(writer, chunks: int, rate: float) -> None:
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
        event = f'{{"type": "text", "name": "output", "content": "[{time.time():.6f}] word{end}", "index": 0}}'
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
            options = dict(item.split("=") for item in prompt.split()[1:])
            await gateway_stream(writer, int(options["chunks"]), float(options["rate"]))
    except (asyncio.IncompleteReadError, ConnectionError, AttributeError):
        pass
    finally:
        writer.close()


async def run_gateway(port: int) -> None:
    server = await asyncio.start_server(gateway_connection, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


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
        self.latencies: list[float] = []
        self.formatted: list[float] = []  # a block's closing chunk to its formatted form
        self.frames = 0
        self.bytes = 0
        self.final_html = 0
        self.seen: set[str] = set()
        self.socket = None

    async def connect(self):
        import websockets

        self.socket = await websockets.connect(
            self.url,
            additional_headers={"Cookie": self.cookie, "Origin": self.origin},
            max_size=None,
            open_timeout=60,
            ping_interval=None,
        )

    async def chat(self, model: int, chunks: int, rate: float) -> None:
        message = {
            "action": "send",
            "message": f"bench chunks={chunks} rate={rate}",
            "model": model,
            "conversation": "",
        }
        await self.socket.send(json.dumps(message))
        async for frame in self.socket:
            now = time.time()
            self.frames += 1
            self.bytes += len(frame.encode())
            if DONE.search(frame):
                article = ARTICLE.search(frame)
                self.final_html = len(article.group(0).encode()) if article else 0
                return
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
                    self.latencies.append(now - float(stamp))

    async def close(self):
        await self.socket.close()


async def relay_phase(app: App, cookies: list[str], model: int, n: int, chunks: int, rate: float) -> dict:
    clients = [
        Client(
            f"ws://127.0.0.1:{app.ports[i % len(app.ports)]}/ws/chat/", cookies[i], f"http://127.0.0.1:{app.ports[0]}"
        )
        for i in range(n)
    ]
    for start in range(0, n, 50):  # connect in batches, like tabs opening over a moment
        await asyncio.gather(*(c.connect() for c in clients[start : start + 50]))
    rss_before = app.rss_bytes()
    cpu_before, wall_before = app.cpu_seconds(), time.monotonic()
    sampler = asyncio.create_task(sample_rss(app, chunks / rate / 2))
    await asyncio.gather(*(c.chat(model, chunks, rate) for c in clients))
    wall = time.monotonic() - wall_before
    cpu = app.cpu_seconds() - cpu_before
    rss_mid = await sampler
    await asyncio.gather(*(c.close() for c in clients))
    latencies = [x for c in clients for x in c.latencies]
    return {
        "formatted": [x for c in clients for x in c.formatted],
        "latencies": latencies,
        "chunks": len(latencies),
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


async def bare_phase(gateway_url: str, n: int, chunks: int, rate: float) -> dict:
    import httpx
    from httpx_sse import aconnect_sse

    latencies: list[list[float]] = [[] for _ in range(n)]

    async def read(i: int, client: httpx.AsyncClient) -> None:
        body = {
            "service_name": "s",
            "model_name": "m",
            "input": [{"type": "text", "name": "input", "content": f"bench chunks={chunks} rate={rate}"}],
        }
        async with aconnect_sse(client, "POST", gateway_url + "/generate/stream", json=body) as source:
            async for event in source.aiter_sse():
                now = time.time()
                data = json.loads(event.data)
                if "content" in data:
                    latencies[i].append(now - float(STAMP.search(data["content"]).group(1)))

    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60), limits=limits) as client:
        cpu_before = time.process_time()
        await asyncio.gather(*(read(i, client) for i in range(n)))
        cpu = time.process_time() - cpu_before
    flat = [x for row in latencies for x in row]
    return {"latencies": flat, "chunks": len(flat), "cpu": cpu}


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


# --- the report -----------------------------------------------------------------------


def run_sizes(app: App, render: str, sizes: list[int], chunks: int, rate: float, gateway_url: str) -> None:
    """One table: the relay at each size, against the bare reader, with `render` on the app."""
    cookies, model = app.prepare(max(max(sizes), 500))
    app.start()
    # Before any stream, while the process is small: memory per connected idle socket.
    idle = asyncio.run(idle_sockets(app, cookies, 500))
    print(f"Answers rendered: {render}")
    print(
        f"{'N':>5} | {'relay p50':>9} {'relay p99':>9} | {'bare p50':>8} {'bare p99':>8} | {'chunks/s':>8} | "
        f"{'CPU/chunk relay':>15} {'bare':>6} {'ratio':>5} | {'RSS':>7}"
    )
    print("-" * 106)
    wire = None
    per_stream = None
    for n in sizes:
        relay = asyncio.run(relay_phase(app, cookies, model, n, chunks, rate))
        bare = asyncio.run(bare_phase(gateway_url, n, chunks, rate))
        relay_cpu = relay["cpu"] / max(relay["chunks"], 1) * 1e6
        bare_cpu = bare["cpu"] / max(bare["chunks"], 1) * 1e6
        print(
            f"{n:>5} | {percentile(relay['latencies'], 0.5) * 1e3:>7.1f}ms "
            f"{percentile(relay['latencies'], 0.99) * 1e3:>7.1f}ms | "
            f"{percentile(bare['latencies'], 0.5) * 1e3:>6.1f}ms {percentile(bare['latencies'], 0.99) * 1e3:>6.1f}ms | "
            f"{relay['chunks'] / relay['wall']:>8.0f} | {relay_cpu:>13.0f}µs {bare_cpu:>4.0f}µs "
            f"{relay_cpu / bare_cpu:>5.2f} | {relay['rss_mid'] / 2**20:>5.0f}MB",
            flush=True,
        )
        if relay["formatted"]:
            print(
                f"{'':>5}   a block's closing chunk to its formatted form: "
                f"p50 {percentile(relay['formatted'], 0.5) * 1e3:.1f} ms, "
                f"p99 {percentile(relay['formatted'], 0.99) * 1e3:.1f} ms ({len(relay['formatted'])} blocks)",
                flush=True,
            )
        if n == 1:
            wire = relay
        if n == 500 or (per_stream is None and n == sizes[-1]):
            per_stream = (n, (relay["rss_mid"] - relay["rss_before"]) / n)
    print()
    print(f"Resident memory per idle socket (500 open): {idle / 1024:.1f} KiB")
    if per_stream:
        print(f"Resident memory per active stream (at N={per_stream[0]}): {per_stream[1] / 1024:.1f} KiB")
    if wire:
        print(
            f"Per answer ({chunks} chunks): {wire['frames']:.0f} WebSocket frames, "
            f"{wire['bytes'] / 1024:.1f} KiB on the wire, final HTML {wire['final_html'] / 1024:.1f} KiB: "
            f"wire/HTML = {wire['bytes'] / max(wire['final_html'], 1):.2f}"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,100,300,500,1000", help="numbers of concurrent streams")
    parser.add_argument("--seconds", type=float, default=10, help="length of each stream")
    parser.add_argument("--rate", type=float, default=20, help="chunks per second per stream")
    parser.add_argument("--redis", action="store_true", help="two processes on Redis + PostgreSQL")
    parser.add_argument("--no-dashboard", action="store_true", help="skip the 1,000,000-row dashboard timing")
    parser.add_argument("--dashboard-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--render", default="live,plain", help="live (formatted while streaming), plain (LIVE_RENDERING=0), or both"
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
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
    for render in args.render.split(","):
        if args.redis:
            reset_postgres(database_url)
        (workdir / render).mkdir()
        app = App(workdir / render, gateway_url, 2 if args.redis else 1, database_url, redis_url, render == "live")
        try:
            run_sizes(app, render, sizes, chunks, args.rate, gateway_url)
        finally:
            app.stop()
    queries = run_queries(gateway_url)
    print(f"Database queries per answer: {queries['500']} for 500 chunks, {queries['5000']} for 5,000 chunks")
    gateway.terminate()
    if not args.no_dashboard:
        print(f"\nCost dashboard over {args.dashboard_rows:,} ledger rows (bench/dashboard.py):", flush=True)
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        if args.redis:
            env["DATABASE_URL"] = database_url
            reset_postgres(database_url)
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "dashboard.py"), "--rows", str(args.dashboard_rows), "--runs", "5"],
            env=env,
            check=True,
        )


def run_queries(gateway_url: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--count-queries", gateway_url], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode:
        raise RuntimeError(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def reset_postgres(url: str) -> None:
    import dj_database_url
    import psycopg

    db = dj_database_url.parse(url)
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    ) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{db["NAME"]}"')


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--gateway":
        asyncio.run(run_gateway(int(sys.argv[2])))
    elif len(sys.argv) == 3 and sys.argv[1] == "--count-queries":
        print(json.dumps(count_queries(sys.argv[2])))
    else:
        main()
