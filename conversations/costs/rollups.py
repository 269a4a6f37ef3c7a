"""Rebuilding the ledger's daily rollups (CostRollup) from the ledger itself.

Generations keep the rollups in step as they write (CostLog.save, bulk_create); this
is for everything else: the migration that adds them, `seed_costlog`, and
`manage.py rebuild_cost_rollups` after raw SQL on the ledger or a change of TIME_ZONE.
One INSERT ... SELECT ... GROUP BY, in the database, whatever the ledger's size.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Count, DateField, Func, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from conversations.models import CostRollup

KEY = ("day", "user_id", "service_name", "model_name")


class UtcDay(Func):
    """created_at's UTC date on SQLite: the first ten characters of the stored text.
    TruncDate would call a Python function for every row there."""

    template = "substr(%(expressions)s, 1, 10)"
    output_field = DateField()


def day_of(column: str) -> Func:
    """The date in TIME_ZONE, as CostRollup.day_of() gives it in Python."""
    if connection.vendor == "sqlite" and settings.TIME_ZONE in ("UTC", "Etc/UTC"):
        return UtcDay(column)
    return TruncDate(column, tzinfo=timezone.get_default_timezone())


def rebuild(cost_log: type[models.Model], cost_rollup: type[models.Model]) -> int:
    """Replace every rollup with the ledger's sums; the number of rollups written.

    Takes the models so the migration can pass its historical ones.
    """
    zero: Value = Value(0)
    whole: models.BigIntegerField = models.BigIntegerField()
    sums = cost_log._default_manager.order_by().annotate(day=day_of("created_at"))
    sums = sums.values("day", "user_id", "service_name", "model_name").annotate(
        generations=Count("*"),
        warned=Count("pk", filter=~Q(warnings=[])),
        **{name: Coalesce(Sum(name), zero, output_field=whole) for name in CostRollup.SUMS[2:]},
    )
    select, params = sums.query.sql_with_params()
    table = connection.ops.quote_name(cost_rollup._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(name) for name in (*KEY, *CostRollup.SUMS))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table}")
        # Named columns from a subquery: the order Django writes the SELECT in is its own.
        cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM ({select}) AS sums", params)
        return cursor.rowcount
