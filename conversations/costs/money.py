"""Money: exact decimal amounts, stored so that sums stay exact on every database.

The gateway reports costs as JSON numbers (`1.5e-07`); the adapter parses them as
Decimal. SQLite has no decimal type (a DecimalField is stored as a float there and
SUM adds floats), so amounts are stored as whole numbers of picounits (10**-12 of
the currency) in a 64-bit integer column: SUM over integers is exact on SQLite and on
PostgreSQL, and still fits sums up to about 9 million.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from django import forms
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Combinable, Expression

PLACES = 12
_UNIT = Decimal(1).scaleb(-PLACES)


def to_units(amount: Decimal | int | str) -> int:
    """Whole picounits of an amount (half-even beyond 12 places, which gateways don't report)."""
    return int((Decimal(amount) / _UNIT).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_units(units: int | Decimal) -> Decimal:
    return Decimal(units).scaleb(-PLACES).normalize() if units else Decimal(0)


def format_money(amount: Decimal | None) -> str:
    """`$0.0000158`, never `$0.00` nor `1.58E-5`: every digit the gateway reported."""
    if amount is None:
        return "—"
    text = format(Decimal(amount).normalize(), "f")
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


def plain(amount: Decimal | None) -> str:
    """`0.0000158`: the exact amount without a currency sign (CSV), "" for none."""
    return "" if amount is None else format(Decimal(amount).normalize(), "f")


def jsonable(value: Any) -> Any:
    """`value` with its Decimals as exact strings, so a JSONField keeps every digit."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


if TYPE_CHECKING:
    # For django-stubs: the model attribute takes and gives Decimals, not the column's
    # integers (None included: every amount we store may be missing).
    _BigIntegerField = models.BigIntegerField[Decimal | int | str | Combinable | None, Decimal | None]
else:
    _BigIntegerField = models.BigIntegerField  # not subscriptable at run time


class MoneyField(_BigIntegerField):
    description = "An exact amount of money, stored as integer picounits"

    def from_db_value(
        self, value: int | None, expression: Expression, connection: BaseDatabaseWrapper
    ) -> Decimal | None:
        return None if value is None else from_units(value)

    def to_python(self, value: Any) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        return Decimal(str(value))

    def get_prep_value(self, value: Any) -> int | None:
        return None if value is None else to_units(value)

    def formfield(
        self,
        form_class: type[forms.Field] | None = None,
        choices_form_class: type[forms.ChoiceField] | None = None,
        **kwargs: Any,
    ) -> forms.Field | None:
        # Skip IntegerField's form field: the admin edits the amount, not the units.
        return models.Field.formfield(
            self,
            form_class=form_class or forms.DecimalField,
            choices_form_class=choices_form_class,
            decimal_places=PLACES,
            max_digits=PLACES + 7,
            **kwargs,
        )
