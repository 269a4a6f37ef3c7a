"""Times the cost dashboard's server-side rendering over a big ledger.

    .venv/bin/python bench/dashboard.py [--rows 1000000] [--runs 9] [--db PATH] [--explain] [--analyze]

Creates a fresh SQLite database in a temporary directory (or uses DATABASE_URL if it is
set: a scratch database, as it gets seeded), migrates it, seeds N ledger rows with
`manage.py seed_costlog` (default 1,000,000 over the last 90 days), then GETs the
dashboard as a staff user through Django's test Client — the whole view, its queries
and the template, no network — several times per scenario, and prints the median and
90th percentile. A benchmark, not a test: run it by hand.

`--db PATH` keeps the SQLite file there (seeded once, reused by later runs: handy to
compare indexes); `--explain` prints each query's time and plan; `--analyze` runs
ANALYZE first, as a deployment that runs `PRAGMA optimize` would have (the app does not).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=9, help="timed runs per scenario (after one warm-up)")
    parser.add_argument("--db", help="SQLite file to create or reuse (default: a fresh one in a temp dir)")
    parser.add_argument("--explain", action="store_true", help="print each query's time and plan")
    parser.add_argument("--analyze", action="store_true", help="run ANALYZE first (query plans from statistics)")
    return parser.parse_args()


def setup(args) -> str:
    if not os.environ.get("DATABASE_URL"):
        path = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="chatsite-bench-")) / "bench.sqlite3"
        os.environ["DATABASE_URL"] = f"sqlite:///{path.resolve()}"
    # The test settings: no .env, known secrets, static files without collectstatic.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test Client's host is allowed
    return os.environ["DATABASE_URL"]


def seed(rows: int) -> None:
    from django.core.management import call_command

    from conversations.models import CostLog

    call_command("migrate", verbosity=0)
    have = CostLog.objects.count()
    if have >= rows:
        print(f"Reusing {have:,} ledger rows.")
        return
    call_command("seed_costlog", rows - have, random_seed=1)


def analyze() -> None:
    """Table statistics, as `ANALYZE` or `PRAGMA optimize` leave them (the app runs neither)."""
    from django.db import connection

    connection.cursor().execute("ANALYZE")


def staff_client():
    from django.contrib.auth import get_user_model
    from django.test import Client

    User = get_user_model()
    staff, _ = User.objects.get_or_create(username="bench-staff", defaults={"is_staff": True})
    client = Client()
    client.force_login(staff)
    return client


def scenarios():
    from conversations.costs.ledger import Period

    days90 = Period.last_days(90)
    return [
        ("this month (default)", "/dashboard/costs/", {}),
        ("last 90 days", f"/dashboard/costs/?from={days90.start}&to={days90.end}", {}),
        ("one user, this month", "/dashboard/costs/?user=seed-user-042", {}),
        ("one model, this month", "/dashboard/costs/?model=google-gemini/gemini-2.0-flash", {}),
        ("sort a table (htmx)", "/dashboard/costs/?users_sort=name", {"HTTP_HX_REQUEST": "true"}),
    ]


def rows_in(url: str) -> int:
    from django.http import QueryDict

    from conversations.costs import ledger
    from conversations.costs import views as dashboard

    form = dashboard.CostFilterForm(QueryDict(url.partition("?")[2]), ledger.model_labels())
    assert form.is_valid(), form.errors
    return form.scope().cost_logs().count()


def explain(client, url, headers):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        client.get(url, **headers)
    for query in queries.captured_queries:
        print(f"  {float(query['time']) * 1000:7.1f} ms  {query['sql'][:160]}")
        if connection.vendor == "sqlite" and query["sql"].startswith("SELECT"):
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN QUERY PLAN " + query["sql"])
                for row in cursor.fetchall():
                    print(f"             {row[-1]}")


def main():
    args = parse_args()
    database = setup(args)
    from django.db import connection

    print(f"Database: {connection.vendor} ({database})")
    started = time.monotonic()
    seed(args.rows)
    if args.analyze:
        analyze()
    print(f"Ready in {time.monotonic() - started:.0f} s.\n")
    client = staff_client()
    print(f"{'scenario':<24} {'rows':>9} {'median':>9} {'p90':>9} {'min':>9}")
    for name, url, headers in scenarios():
        response = client.get(url, **headers)  # warm-up: caches, first query plans
        assert response.status_code == 200, (url, response.status_code)
        timings = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            response = client.get(url, **headers)
            timings.append((time.perf_counter() - t0) * 1000)
        timings.sort()
        p90 = timings[min(len(timings) - 1, round(0.9 * (len(timings) - 1)))]
        print(f"{name:<24} {rows_in(url):>9,} {statistics.median(timings):>7.0f}ms {p90:>7.0f}ms {timings[0]:>7.0f}ms")
        if args.explain:
            explain(client, url, headers)


if __name__ == "__main__":
    main()
