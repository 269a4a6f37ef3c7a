"""Times the cost dashboard's server-side rendering over a big ledger.

    .venv/bin/python bench/dashboard.py [--rows 1000000] [--runs 9] [--db PATH] [--explain] [--analyze]
                                        [--json FILE]

Creates a fresh SQLite database in a temporary directory (or uses DATABASE_URL if it is
set: a scratch database, as it gets seeded), migrates it, seeds N ledger rows with
`manage.py seed_costlog` (default 1,000,000 over the last 90 days), then GETs the
dashboard as a staff user through Django's test Client — the whole view, its queries
and the template, no network — several times per scenario, and prints the median and
90th percentile. A benchmark, not a test: run it by hand. The page loads its "Top
conversations" after itself (htmx): the "top conversations" scenarios time that request.

Every scenario asks for a fixed period: the days the seeded ledger spans (its first to
its last day), or the last 30 of them, never "this month", whose share of the rows
depends on the date the benchmark runs.

`--db PATH` keeps the SQLite file there (seeded once, reused by later runs: handy to
compare indexes); `--explain` prints each query's time and plan; `--analyze` runs
ANALYZE first, as a deployment that runs `PRAGMA optimize` would have (the app does not);
`--json FILE` also writes the table there, one object per scenario.
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--json", metavar="FILE", help="also write the results there, one object per scenario")
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
    from django.db.models import Max, Min

    from conversations.costs.ledger import Period
    from conversations.models import CostRollup

    days = CostRollup.objects.aggregate(first=Min("day"), last=Max("day"))
    seeded = Period(days["first"], days["last"]) if days["first"] else Period.last_days(90)
    last30 = Period(max(seeded.start, Period.last_days(30, seeded.end).start), seeded.end)
    span = f"from={seeded.start}&to={seeded.end}"
    return [
        (f"all {len(seeded.days())} days", f"/dashboard/costs/?{span}", {}),
        ("last 30 days", f"/dashboard/costs/?from={last30.start}&to={last30.end}", {}),
        ("one user, all days", f"/dashboard/costs/?{span}&user=seed-user-042", {}),
        ("one model, all days", f"/dashboard/costs/?{span}&model=google-gemini/gemini-2.0-flash", {}),
        ("sort a table (htmx)", f"/dashboard/costs/?{span}&users_sort=name", {"HTTP_HX_REQUEST": "true"}),
        # The table the page loads after itself (htmx, hx-trigger="load"): timed apart.
        ("top conversations, all", f"/dashboard/costs/top/?{span}", {"HTTP_HX_REQUEST": "true"}),
        (
            "top conversations, 30 d",
            f"/dashboard/costs/top/?from={last30.start}&to={last30.end}",
            {"HTTP_HX_REQUEST": "true"},
        ),
        (
            "top conversations, model",
            f"/dashboard/costs/top/?{span}&model=google-gemini/gemini-2.0-flash",
            {"HTTP_HX_REQUEST": "true"},
        ),
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
    results = []
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
        median, rows = statistics.median(timings), rows_in(url)
        print(f"{name:<24} {rows:>9,} {median:>7.0f}ms {p90:>7.0f}ms {timings[0]:>7.0f}ms", flush=True)
        results.append(
            {
                "scenario": name,
                "url": url,
                "rows": rows,
                "median_ms": round(median, 2),
                "p90_ms": round(p90, 2),
                "min_ms": round(timings[0], 2),
                "runs": args.runs,
                "database": connection.vendor,
            }
        )
        if args.explain:
            explain(client, url, headers)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
