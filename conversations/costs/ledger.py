"""The ledger: what each answer cost, written when it ends, and summed by the database.

`settle()` writes what an ended answer leaves besides its text (its CostLog row, its
images, its key's use) in the transaction that ends it. The rest reads.

The dashboard's sums (totals, chart, user and model tables, their CSVs) read the
rollups (CostRollup: the ledger summed per day, user and model, kept in step with it),
so a period costs days × users × models rows, not one per generation. What needs
finer grain reads the ledger itself: the costliest conversations, the Usage page's
conversations, the ledger CSV; answers with no cost reported are Message rows, counted
through their status index. All of it is aggregated in SQL, with Sum and Count over
values() groups; no ledger row is loaded into Python. Sums are exact on every database
because money is stored as integer picounits (see money.py). Python only adds up the
few grouped rows (days × models) into the period's totals, which is exact too:
Decimal addition.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Aggregate, Count, DateTimeField, F, Func, Q, QuerySet, Sum
from django.utils import timezone

from conversations.costs.money import jsonable
from conversations.gateway import Final
from conversations.images import CheckedImage
from conversations.models import ApiKey, Attachment, Conversation, CostLog, CostRollup, GatewayModel, Message

# Ledger rows, or their rollups: a Scope narrows either the same way.
_Rows = TypeVar("_Rows", "QuerySet[CostLog]", "QuerySet[CostRollup]")

# --- writing: one call when an answer ends ------------------------------------------


def settle(
    answer: Message,
    *,
    final: Final | None,
    images: list[tuple[CheckedImage, str]],
    api_key_id: int | None,
    key_refused: bool,
    gateway_answered: bool,
) -> None:
    """Everything an ended answer leaves besides its text; call inside its transaction.

    `final` is the gateway's final chunk (no chunk, no row: the cost is unknown, never 0);
    `images` were checked and stored as files (name beside each); `api_key_id` is the
    user's key that was sent (None: the site's), refused or answered by the gateway.
    """
    Attachment.objects.bulk_create(
        Attachment(
            message_id=answer.pk,
            file=name,
            mime_type=image.mime_type,
            size=image.size,
            width=image.width,
            height=image.height,
            source=image.source,
            source_url=image.source_url[:2000],
        )
        for image, name in images
    )
    if api_key_id is not None:
        ApiKey.record_use(api_key_id, refused=key_refused, answered=gateway_answered)
    if final is not None:
        CostLog.objects.create(
            user_id=answer.conversation.user_id,
            conversation_id=answer.conversation_id,
            message_id=answer.pk,
            service_name=answer.service_name,
            model_name=answer.model_name,
            input_tokens=final.input_tokens,
            output_tokens=final.output_tokens,
            total_tokens=final.total_tokens,
            cost_input=final.cost_input,
            cost_output=final.cost_output,
            cost_total=final.cost_total,
            warnings=final.warnings,
            final_chunk=jsonable(final.raw),
        )


# --- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Whole days in the site's time zone, both ends included, between FIRST_DAY and
    LAST_DAY: far beyond any ledger row, and far from the ends of Python's dates (a
    period ending on 9999-12-31 could not say where its last day ends)."""

    start: date
    end: date

    FIRST_DAY: ClassVar[date] = date(2000, 1, 1)
    LAST_DAY: ClassVar[date] = date(2100, 12, 31)

    def __post_init__(self) -> None:
        if not self.FIRST_DAY <= self.start <= self.end <= self.LAST_DAY:
            raise ValueError(f"Not a period the ledger covers: {self.start} to {self.end}.")

    @classmethod
    def this_month(cls, today: date | None = None) -> Period:
        today = today or timezone.localdate()
        return cls(today.replace(day=1), today)

    @classmethod
    def last_days(cls, days: int, today: date | None = None) -> Period:
        today = today or timezone.localdate()
        return cls(today - timedelta(days=days - 1), today)

    def bounds(self) -> tuple[datetime, datetime]:
        """[start, end) as aware datetimes: a range the created_at indexes can seek."""
        tz = timezone.get_current_timezone()
        return (
            datetime.combine(self.start, time.min, tzinfo=tz),
            datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=tz),
        )

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def __str__(self) -> str:
        if self.start == self.end:
            return day_label(self.end, year=True)
        if (self.start.year, self.start.month) == (self.end.year, self.end.month):
            return f"{self.start.day}–{day_label(self.end, year=True)}"
        return f"{day_label(self.start, year=True)} – {day_label(self.end, year=True)}"


def day_label(day: date, *, year: bool = False) -> str:
    """`1 December` (portable: no %-d)."""
    return f"{day.day} {day:%B %Y}" if year else f"{day.day} {day:%B}"


def month_start() -> datetime:
    return Period.this_month().bounds()[0]


def next_month_start(today: date | None = None) -> date:
    today = today or timezone.localdate()
    last = calendar.monthrange(today.year, today.month)[1]
    return today.replace(day=last) + timedelta(days=1)


@dataclass(frozen=True)
class Scope:
    """Which part of the ledger: a period, and optionally one user and one model."""

    period: Period
    user_id: int | None = None
    service_name: str | None = None
    model_name: str | None = None

    def cost_logs(self) -> QuerySet[CostLog]:
        start, end = self.period.bounds()
        return self.narrow(CostLog.objects.filter(created_at__gte=start, created_at__lt=end))

    def rollups(self) -> QuerySet[CostRollup]:
        """The same ledger rows, summed per day, user and model (see CostRollup)."""
        return self.narrow(CostRollup.objects.filter(day__gte=self.period.start, day__lte=self.period.end))

    def narrow(self, rows: _Rows) -> _Rows:
        if self.user_id is not None:
            rows = rows.filter(user_id=self.user_id)
        if self.model_name is not None:
            rows = rows.filter(service_name=self.service_name, model_name=self.model_name)
        return rows.order_by()  # no Meta ordering in GROUP BY queries

    def no_cost_messages(self) -> QuerySet[Message]:
        start, end = self.period.bounds()
        messages = Message.no_cost_reported().filter(created_at__gte=start, created_at__lt=end)
        if self.user_id is not None:
            messages = messages.filter(conversation__user_id=self.user_id)
        if self.model_name is not None:
            messages = messages.filter(service_name=self.service_name, model_name=self.model_name)
        return messages


# --- sums ---------------------------------------------------------------------------

# One values() row: its group (day, model, user...) and its sums by name.
Row = dict[str, Any]
SUM_FIELDS = ("cost", "cost_input", "cost_output", "input_tokens", "output_tokens", "tokens", "generations", "warned")
# Each aggregate costs SQLite time on every row, so pages ask only for what they show.
PAGE_SUMS = ("cost", "input_tokens", "output_tokens", "tokens", "generations", "warned")
TABLE_SUMS = ("cost", "tokens", "generations")


def _sums(names: Iterable[str]) -> dict[str, Aggregate]:
    """Sums over CostLog rows (one row, one generation)."""
    sums = {
        "cost": Sum("cost_total"),
        "cost_input": Sum("cost_input"),
        "cost_output": Sum("cost_output"),
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "tokens": Sum("total_tokens"),
        "generations": Count("*"),
        "warned": Count("pk", filter=~Q(warnings=[])),
    }
    return {name: sums[name] for name in names}


def _rollup_sums(names: Iterable[str]) -> dict[str, Aggregate]:
    """The same sums over CostRollup rows, which hold them already summed."""
    columns = {"cost": "cost_total", "tokens": "total_tokens"}
    return {name: Sum(columns.get(name, name)) for name in names}


@dataclass
class Totals:
    """Sums over some ledger rows. None-valued sums (nothing reported) count as zero."""

    cost: Decimal = Decimal(0)
    cost_input: Decimal = Decimal(0)
    cost_output: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    tokens: int = 0
    generations: int = 0
    warned: int = 0
    share: Decimal | None = None  # of the period's total cost, in percent

    @classmethod
    def of(cls, row: Row) -> Totals:
        # A sum that is None (nothing reported) or 0 keeps the field's default.
        return cls(**{name: value for name in SUM_FIELDS if (value := row.get(name))})

    def add(self, other: Totals) -> None:
        for name in SUM_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def set_share(self, total_cost: Decimal) -> None:
        self.share = self.cost * 100 / total_cost if total_cost else None


@dataclass
class Group:
    """One row of a breakdown: who or what, and its totals."""

    key: object
    label: str
    totals: Totals
    url: str = ""  # where the label links
    filter: str = ""  # the dashboard's filter value for it (user=..., model=...)


def daily(scope: Scope, sums: Iterable[str] = PAGE_SUMS) -> list[Row]:
    """Sums per day and model: the chart, and (added up) the totals and the model table."""
    return list(scope.rollups().values("day", "service_name", "model_name").annotate(**_rollup_sums(sums)))


def totals_of(groups: Iterable[Row | Totals]) -> Totals:
    total = Totals()
    for group in groups:
        total.add(group if isinstance(group, Totals) else Totals.of(group))
    return total


def model_labels() -> dict[tuple[str, str], str]:
    return {(m.service_name, m.model_name): m.label for m in GatewayModel.objects.all()}


def by_model(
    daily_rows: list[Row], total_cost: Decimal | None = None, labels: dict[tuple[str, str], str] | None = None
) -> list[Group]:
    """The model table, from the per-day sums (a few hundred rows at most). The shares
    are of `total_cost` (default: the sum of these rows); `labels`: model_labels(), when
    the caller has them already."""
    labels = model_labels() if labels is None else labels
    groups: dict[tuple[str, str], Totals] = {}
    for row in daily_rows:
        key = (row["service_name"], row["model_name"])
        groups.setdefault(key, Totals()).add(Totals.of(row))
    if total_cost is None:
        total_cost = sum((totals.cost for totals in groups.values()), Decimal(0))
    result = []
    for key, totals in groups.items():
        totals.set_share(total_cost)
        result.append(Group(key, labels.get(key, key[1]), totals, filter=f"{key[0]}/{key[1]}"))
    return result


def by_user(scope: Scope, total_cost: Decimal, sums: Iterable[str] = TABLE_SUMS) -> list[Group]:
    """Sums per user, from the rollups."""
    rows = list(scope.rollups().values("user_id").annotate(**_rollup_sums(sums)))
    users = get_user_model().objects.filter(pk__in=[r["user_id"] for r in rows if r["user_id"]])
    names = dict(users.values_list("pk", "username"))
    groups = []
    for row in rows:
        totals = Totals.of(row)
        totals.set_share(total_cost)
        user_id = row["user_id"]
        name = names.get(user_id)
        groups.append(Group(user_id, name or "(deleted user)", totals, filter=name or ""))
    return groups


class Unindexed(Func):
    """A column SQLite must not look up by index: `+column`, the same value."""

    template = "+%(expressions)s"


# Above this share of the ledger's time span, SQLite reads the top conversations from the
# index in conversation order (see _by_conversation_order).
WHOLE_INDEX_SHARE = 0.15


def _by_conversation_order(scope: Scope) -> QuerySet[CostLog]:
    """The scope's ledger rows, for grouping by conversation.

    SQLite plans without statistics here (nothing runs ANALYZE), so it seeks the period in
    the time index and then sorts every row of it by conversation: ~500 ms for a million.
    Reading the whole ledger in conversation order (costlog_conversation_totals, no sort)
    takes ~130 ms, whatever the period: better once the period holds much of the ledger,
    so there the period's condition is kept from the time index. One user's rows stay on
    their own index; PostgreSQL has statistics and picks for itself."""
    if connection.vendor != "sqlite" or scope.user_id is not None:
        return scope.cost_logs()
    first = CostLog.objects.order_by("created_at").values_list("created_at", flat=True).first()
    last = CostLog.objects.order_by("-created_at").values_list("created_at", flat=True).first()
    if first is None or last is None:
        return scope.cost_logs()
    start, end = scope.period.bounds()
    overlap = min(end, last) - max(start, first)
    if overlap.total_seconds() <= WHOLE_INDEX_SHARE * max((last - first).total_seconds(), 1):
        return scope.cost_logs()
    at = Unindexed("created_at", output_field=DateTimeField())
    return scope.narrow(CostLog.objects.alias(at=at).filter(at__gte=start, at__lt=end))


def top_conversations(scope: Scope, limit: int = 10) -> list[Group]:
    """The costliest conversations; deleted ones (their rows stay) add up in one row."""
    rows = list(
        _by_conversation_order(scope)
        .values("conversation_id")
        .annotate(**_sums(TABLE_SUMS))
        .order_by(F("cost").desc(nulls_last=True), "conversation_id")[:limit]
    )
    conversations = (
        Conversation.objects.select_related("user")
        .only("title", "user__username")
        .in_bulk([r["conversation_id"] for r in rows if r["conversation_id"]])
    )
    groups = []
    for row in rows:
        conversation = conversations.get(row["conversation_id"])
        if conversation is not None:
            groups.append(Group(conversation, str(conversation), Totals.of(row)))
        else:
            groups.append(Group(None, "(deleted conversations)", Totals.of(row)))
    return groups


def by_conversation(scope: Scope) -> list[Group]:
    """One user's conversations by cost (the Usage page); deleted ones add up in one row."""
    rows = list(
        scope.cost_logs()
        .values("conversation_id")
        .annotate(**_sums(TABLE_SUMS))
        .order_by(F("cost").desc(nulls_last=True), "conversation_id")
    )
    titles = dict(
        Conversation.objects.filter(pk__in=[r["conversation_id"] for r in rows if r["conversation_id"]]).values_list(
            "pk", "title"
        )
    )
    groups = []
    for row in rows:
        conversation_id = row["conversation_id"]
        if conversation_id in titles:
            label = titles[conversation_id] or f"Conversation {conversation_id}"
            url = Conversation(pk=conversation_id).get_absolute_url()
            groups.append(Group(conversation_id, label, Totals.of(row), url))
        else:
            groups.append(Group(None, "(deleted conversations)", Totals.of(row)))
    return groups


def no_cost_reported(scope: Scope) -> int:
    return scope.no_cost_messages().count()


SORT_KEYS = {
    "name": lambda g: g.label.casefold(),
    "cost": lambda g: g.totals.cost,
    "tokens": lambda g: g.totals.tokens,
    "generations": lambda g: g.totals.generations,
}


def sort_groups(groups: list[Group], sort: str) -> list[Group]:
    """`cost`, `-cost`, `name`, ...: the aggregated rows, in the order the table asks."""
    key = sort.lstrip("-")
    # Ties keep a stable, readable order: by name.
    groups = sorted(groups, key=SORT_KEYS["name"])
    return sorted(groups, key=SORT_KEYS[key], reverse=sort.startswith("-"))


@dataclass
class Report:
    """Everything the dashboard shows for one scope."""

    scope: Scope
    totals: Totals = field(default_factory=Totals)
    daily: list[Row] = field(default_factory=list)
    models: list[Group] = field(default_factory=list)
    users: list[Group] = field(default_factory=list)
    no_cost: int = 0

    @classmethod
    def build(cls, scope: Scope, labels: dict[tuple[str, str], str] | None = None, *, details: bool = True) -> Report:
        report = cls(scope)
        report.daily = daily(scope)
        # The period's totals are the models' (a few rows), not the days' again.
        report.models = by_model(report.daily, labels=labels)
        report.totals = totals_of(group.totals for group in report.models)
        report.users = by_user(scope, report.totals.cost)
        if details:
            report.no_cost = no_cost_reported(scope)
        return report
