"""Monthly budgets: how much a user may spend a month, and where they stand.

A user's limit is their own Budget if they have one (an empty limit there exempts
them), else the site's default (SiteSettings), else none. The month-to-date spend is a
database Sum over the ledger's daily rollups, exact to the picounit. At 80% the user is warned; at
100% new generations are refused (consumers.py). A generation already running is never
cut off: it finishes and its cost goes in the ledger like any other, which is also why
the spend can end up above the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Sum

from conversations.costs import ledger
from conversations.costs.money import format_money
from conversations.models import Budget, CostRollup, SiteSettings

WARNING_SHARE = Decimal("0.8")


@dataclass(frozen=True)
class BudgetState:
    limit: Decimal | None  # None: no limit
    spent: Decimal  # this month so far
    resumes_on: date  # the first day of next month

    @property
    def state(self) -> str:
        """`ok`, `warning` (80% spent) or `exceeded` (100%: new answers are refused)."""
        if self.limit is None:
            return "ok"
        if self.spent >= self.limit:
            return "exceeded"
        if self.spent >= self.limit * WARNING_SHARE:
            return "warning"
        return "ok"

    @property
    def exceeded(self) -> bool:
        return self.state == "exceeded"

    @property
    def warning(self) -> bool:
        return self.state == "warning"

    @property
    def percent(self) -> int | None:
        if not self.limit:
            return None
        return int(self.spent * 100 / self.limit)

    @property
    def message(self) -> str:
        if self.limit is None:
            return ""
        spent = f"You have spent {format_money(self.spent)} of your {format_money(self.limit)} monthly budget"
        resumes = ledger.day_label(self.resumes_on)
        if self.exceeded:
            return f"{spent}; new answers are paused until {resumes}."
        if self.warning:
            return f"{spent} ({self.percent}%); new answers pause when you reach it, until {resumes}."
        return f"{spent}."


def monthly_limit(user: AbstractBaseUser) -> Decimal | None:
    budget = Budget.objects.filter(user_id=user.pk).first()
    if budget is not None:
        return budget.monthly_limit
    return SiteSettings.load().default_monthly_budget


def spent_this_month(user: AbstractBaseUser) -> Decimal:
    # From the rollups: at most a row per day and model, always equal to the ledger's sum.
    month = ledger.Period.this_month()
    total = CostRollup.objects.filter(user_id=user.pk, day__gte=month.start).aggregate(total=Sum("cost_total"))
    return total["total"] or Decimal(0)


def state(user: AbstractBaseUser) -> BudgetState:
    """The user's budget: the limit, this month's spend and what it means."""
    return BudgetState(monthly_limit(user), spent_this_month(user), ledger.next_month_start())
