"""Money stays exact: parsing, storage on SQLite/PostgreSQL, sums, display."""

from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from conversations.costs.money import format_money, from_units, to_units
from conversations.models import CostLog


def test_it_converts_to_units_and_back_exactly():
    for text in ["1.5e-07", "0.0001536", "0.1", "123456.000000000001", "0"]:
        assert from_units(to_units(Decimal(text))) == Decimal(text)


def test_it_formats_every_reported_digit():
    assert format_money(Decimal("1.58E-5")) == "$0.0000158"
    assert format_money(Decimal("0.00015375")) == "$0.00015375"
    assert format_money(Decimal("12.50")) == "$12.5"
    assert format_money(Decimal("0")) == "$0"
    assert format_money(None) == "—"


@pytest.mark.django_db
def test_it_sums_exactly_in_the_database(alice):
    costs = ["1.5e-07", "0.0001536", "0.1", "0.2"] + ["1e-07"] * 10_000
    CostLog.objects.bulk_create(
        CostLog(user=alice, service_name="s", model_name="m", cost_total=Decimal(c)) for c in costs
    )
    total = CostLog.objects.aggregate(total=Sum("cost_total"))["total"]
    assert total == sum(Decimal(c) for c in costs) == Decimal("0.30115375")


@pytest.mark.django_db
def test_it_stores_integers_not_floats(alice):
    CostLog.objects.create(user=alice, service_name="s", model_name="m", cost_total=Decimal("0.1"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT cost_total FROM conversations_costlog")
        (raw,) = cursor.fetchone()
    assert raw == 100_000_000_000 and isinstance(raw, int)
