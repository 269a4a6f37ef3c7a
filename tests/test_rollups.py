"""The ledger's daily rollups: always the ledger's sums to the last digit, whatever
writes, deletes or rebuilds them, on the database the suite runs on."""

from __future__ import annotations

import importlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from conversations.costs import budgets
from conversations.models import Budget, CostLog, CostRollup
from tests.accounts import make_user
from tests.costs import conversation, log_cost

pytestmark = pytest.mark.django_db

SUMS = CostRollup.SUMS


def ledger_sums() -> dict[tuple, tuple]:
    """The ledger summed per TIME_ZONE day, user and model, in Python, exactly."""
    tz = timezone.get_default_timezone()
    sums: dict[tuple, list] = defaultdict(lambda: [0, 0, 0, 0, 0, Decimal(0), Decimal(0), Decimal(0)])
    for log in CostLog.objects.all():
        key = (timezone.localtime(log.created_at, tz).date(), log.user_id, log.service_name, log.model_name)
        row = sums[key]
        row[0] += 1
        row[1] += 1 if log.warnings else 0
        row[2] += log.input_tokens or 0
        row[3] += log.output_tokens or 0
        row[4] += log.total_tokens or 0
        row[5] += log.cost_input or 0
        row[6] += log.cost_output or 0
        row[7] += log.cost_total or 0
    return {key: tuple(row) for key, row in sums.items()}


def rollup_sums() -> dict[tuple, tuple]:
    """The rollups, with the rows of one key added up (rows of no user may be several)."""
    sums: dict[tuple, list] = {}
    for rollup in CostRollup.objects.all():
        key = (rollup.day, rollup.user_id, rollup.service_name, rollup.model_name)
        row = sums.setdefault(key, [0, 0, 0, 0, 0, Decimal(0), Decimal(0), Decimal(0)])
        for i, name in enumerate(SUMS):
            row[i] += getattr(rollup, name)
    # A key whose ledger rows all went leaves no rollup behind, not a row of zeros.
    assert all(row[0] for row in sums.values()), sums
    return {key: tuple(row) for key, row in sums.items()}


def assert_in_step() -> None:
    assert rollup_sums() == ledger_sums()


def test_the_rollups_follow_every_write_and_delete_of_the_ledger(alice, bob):
    carol = make_user("carol")
    now = timezone.now()
    chat, other, carols = conversation(alice), conversation(bob), conversation(carol)
    # Tiny and large amounts, unknown costs, warnings, several days, users and models.
    log_cost(alice, "1.5e-07", chat=chat)
    log_cost(alice, "0.0001536", chat=chat, warnings=["Rate limit: 1 left"])
    log_cost(alice, "0.1", chat=chat, when=now - timedelta(days=3), model="gemini-3-pro-thinking-preview")
    log_cost(bob, "0.2", chat=other, service="openai", model="gpt-4o-mini", tokens=(4000, 1500))
    log_cost(carol, "0.3", chat=carols, when=now - timedelta(days=40))
    log_cost(carol, "0.000000000001", chat=carols, when=now - timedelta(days=40))
    unknown = CostLog.objects.create(user=bob, service_name="openai", model_name="gpt-4o-mini")  # no cost reported
    assert unknown.cost_total is None
    # In bulk too (as tests and scripts write many rows).
    CostLog.objects.bulk_create(
        CostLog(user=bob, service_name="openai", model_name="gpt-4o-mini", cost_total=Decimal("1e-07"), total_tokens=3)
        for _ in range(1000)
    )
    assert_in_step()
    assert sum(r.cost_total for r in CostRollup.objects.all()) == Decimal("0.600253750001")

    # Deleting a conversation keeps its ledger rows (and so their rollups).
    chat.delete()
    assert CostLog.objects.filter(user=alice).count() == 3
    assert_in_step()

    # A deleted user's rows stay without a user, in the ledger and in the rollups: both
    # of carol's rows (one day, one model) end up as one sum of no user.
    carol.delete()
    assert CostLog.objects.filter(user__isnull=True).count() == 2
    assert_in_step()
    bob.delete()
    assert_in_step()

    # Budget edits touch neither.
    Budget.objects.create(user=alice, monthly_limit=Decimal("0.5"))
    Budget.objects.filter(user=alice).update(monthly_limit=Decimal("0.01"))
    assert_in_step()
    assert budgets.spent_this_month(alice) == Decimal("0.0001537500") + (
        Decimal("0.1") if (now - timedelta(days=3)).month == now.month else 0
    )

    # Deleting ledger rows (the admin can) takes them out, with or without a user, down
    # to no rollup at all.
    CostLog.objects.filter(pk__in=CostLog.objects.filter(user__isnull=True).values("pk")[:500]).delete()
    assert_in_step()
    CostLog.objects.filter(user=alice).first().delete()
    assert_in_step()
    CostLog.objects.all().delete()
    assert_in_step()
    assert not CostRollup.objects.exists()


def test_a_ledger_row_saved_again_moves_its_sums():
    alice = make_user("alice")
    log = log_cost(alice, "0.25")
    log.cost_total = Decimal("0.5")
    log.created_at -= timedelta(days=2)
    log.save()
    assert_in_step()
    assert CostRollup.objects.get().cost_total == Decimal("0.5")


def test_a_day_is_a_date_in_time_zone(settings, alice):
    """23:30 UTC is the next day in Berlin: the rollup, its rebuild and the dashboard's
    periods agree on it."""
    settings.TIME_ZONE = "Europe/Berlin"
    late = datetime(2026, 11, 10, 23, 30, tzinfo=UTC)
    log_cost(alice, "0.5", when=late)
    assert CostRollup.objects.get().day == late.astimezone(ZoneInfo("Europe/Berlin")).date()  # 11 November
    call_command("rebuild_cost_rollups")
    assert CostRollup.objects.get().day.isoformat() == "2026-11-11"
    assert_in_step()


def test_rebuild_cost_rollups_rebuilds_them_from_the_ledger(alice, bob, capsys):
    for days, user, cost in ((0, alice, "0.1"), (0, bob, "0.2"), (5, alice, "1e-07"), (5, alice, "0.3")):
        log_cost(user, cost, when=timezone.now() - timedelta(days=days), warnings=["w"] if days else ())
    kept = rollup_sums()
    # What the ledger's own hooks do not see: an update in bulk, lost rollups.
    CostLog.objects.filter(user=bob).update(cost_total=Decimal("0.7"))
    CostRollup.objects.filter(user=alice).delete()
    assert rollup_sums() != ledger_sums()
    call_command("rebuild_cost_rollups")
    assert "Rebuilt 3 rollups from 4 ledger rows" in capsys.readouterr().out
    assert_in_step()
    assert {key: row for key, row in rollup_sums().items() if key[1] == alice.pk} == {
        key: row for key, row in kept.items() if key[1] == alice.pk
    }


def test_the_migration_fills_the_rollups_of_the_ledger_there(alice, bob):
    log_cost(alice, "0.1")
    log_cost(alice, "0.0000001", when=timezone.now() - timedelta(days=1), warnings=["w"])
    CostLog.objects.create(user=bob, service_name="openai", model_name="gpt-4o-mini", cost_total=Decimal("0.2"))
    CostRollup.objects.all().delete()  # as before the migration: a ledger, no rollups
    migration = importlib.import_module("conversations.migrations.0008_cost_rollups")
    editor = SimpleNamespace(
        connection=connection, execute=lambda sql, params: connection.cursor().execute(sql, params)
    )
    migration.backfill(apps, editor)
    assert_in_step()


def test_seed_costlog_builds_the_rollups_too():
    call_command("seed_costlog", 3000, random_seed=3, batch_size=700)
    assert CostRollup.objects.count() > 100
    assert_in_step()
    call_command("seed_costlog", 20, random_seed=4)  # adds to a ledger that has rows
    assert_in_step()
