"""The cost pages: the staff dashboard over the whole ledger, its CSV exports, and each
user's own usage. The numbers come from ledger.py (database aggregation only)."""

from __future__ import annotations

import csv
import heapq
import logging
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from functools import wraps
from itertools import islice
from typing import cast

from asgiref.sync import sync_to_async
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

from conversations.costs import budgets, chart, ledger
from conversations.costs.money import plain

log = logging.getLogger(__name__)

# The user table shows this many rows unless asked for all (?all_users=1); the CSV has them all.
TABLE_ROWS = 20


def staff_required(view):
    """Staff only: a visitor is sent to log in, anyone else gets 403."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


def _in_the_ledger(day: date) -> None:
    first, last = ledger.Period.FIRST_DAY, ledger.Period.LAST_DAY
    if not first <= day <= last:
        raise forms.ValidationError(
            f"Pick a day between {ledger.day_label(first, year=True)} and {ledger.day_label(last, year=True)}."
        )


class CostFilterForm(forms.Form):
    """The dashboard's query string: ?from=2026-11-01&to=2026-11-30&user=alice&model=service/model"""

    user = forms.CharField(required=False, label="User", widget=forms.TextInput(attrs={"list": "ledger-users"}))
    model = forms.ChoiceField(required=False, label="Model")

    def __init__(self, data, labels: dict[tuple[str, str], str]):
        super().__init__(data)
        # "from" is a Python keyword: these two can't be class attributes.
        for name in ("from", "to"):
            self.fields[name] = forms.DateField(
                required=False,
                label=name.title(),
                validators=[_in_the_ledger],
                widget=forms.DateInput(
                    attrs={
                        "type": "date",
                        "min": ledger.Period.FIRST_DAY.isoformat(),
                        "max": ledger.Period.LAST_DAY.isoformat(),
                    }
                ),
            )
        self.order_fields(["from", "to", "user", "model"])
        choices = {f"{service}/{model}": label for (service, model), label in labels.items()}
        # A model no longer in the catalogue can still be picked from the model table.
        if (asked := data.get("model")) and "/" in asked and asked not in choices:
            choices[asked] = asked.split("/", 1)[1]
        model_field = cast(forms.ChoiceField, self.fields["model"])
        model_field.choices = [("", "All models"), *sorted(choices.items(), key=lambda c: c[1].casefold())]

    def clean(self):
        super().clean()
        data = self.cleaned_data
        start, end = data.get("from"), data.get("to")
        if start and end and start > end:
            raise forms.ValidationError("“From” must be on or before “To”.")
        username = data.get("user", "").strip()
        data["user_id"] = None
        if username:
            user_id = get_user_model().objects.filter(username=username).values_list("pk", flat=True).first()
            if user_id is None:
                self.add_error("user", f"There is no user named “{username}”.")
            data["user_id"] = user_id
        return data

    def scope(self) -> ledger.Scope:
        data = self.cleaned_data
        period = _period(data.get("from"), data.get("to"))
        service_name = model_name = None
        if data.get("model"):
            service_name, model_name = data["model"].split("/", 1)
        return ledger.Scope(period, data["user_id"], service_name, model_name)


def _period(start: date | None, end: date | None) -> ledger.Period:
    """The days asked for. Without a start: from the first of the end's month; without an
    end: to the end of this month (or the start, if later); without either: this month."""
    if end is not None:
        return ledger.Period(start or end.replace(day=1), end)
    this_month = ledger.Period.this_month()
    if start is None:
        return this_month
    return ledger.Period(start, max(start, this_month.end))


# --- sorting --------------------------------------------------------------------------

SORTABLE = {"name", "cost", "tokens", "generations"}


def _sort_param(request, name: str) -> str:
    value = request.GET.get(name, "-cost")
    return value if value.lstrip("-") in SORTABLE else "-cost"


def _columns(current: str, name_label: str) -> list[dict]:
    """The sortable headers: which way each link sorts next, and aria-sort for the current one."""
    columns = []
    for key, label in (("name", name_label), ("cost", "Cost"), ("tokens", "Tokens"), ("generations", "Generations")):
        first = key if key == "name" else f"-{key}"  # names A→Z first, numbers biggest first
        active = current.lstrip("-") == key
        descending = current.startswith("-")
        columns.append(
            {
                "key": key,
                "label": label,
                "next": (key if descending else f"-{key}") if active else first,
                "aria_sort": ("descending" if descending else "ascending") if active else "",
            }
        )
    return columns


# --- the dashboard ------------------------------------------------------------------------


@staff_required
def costs(request):
    labels = ledger.model_labels()
    query = request.GET.copy()
    form = CostFilterForm(query, labels)
    if not form.is_valid():
        return render(request, "conversations/costs.html", {"form": form}, status=400)
    scope = form.scope()
    # The date fields show the period in use, also when it is the default; the top
    # conversations' URL carries it too, so they load the page's days even past midnight.
    for name, day in (("from", scope.period.start), ("to", scope.period.end)):
        if not query.get(name):
            query[name] = day.isoformat()
    users_sort = _sort_param(request, "users_sort")
    models_sort = _sort_param(request, "models_sort")
    show_all = request.GET.get("all_users") == "1"
    # The sort links swap in only the two tables (see the template): skip the rest. A
    # history restore (back button, htmx's cache missed) needs the whole page.
    details = not request.htmx or request.htmx.history_restore_request
    report = ledger.Report.build(scope, labels, details=details)
    tables = [
        {
            "id": "by-user",
            "title": "By user",
            "columns": _columns(users_sort, "User"),
            "groups": ledger.sort_groups(report.users, users_sort)[: None if show_all else TABLE_ROWS],
            "more": len(report.users) if len(report.users) > TABLE_ROWS and not show_all else 0,
        },
        {
            "id": "by-model",
            "title": "By model",
            "columns": _columns(models_sort, "Model"),
            "groups": ledger.sort_groups(report.models, models_sort),
            "more": 0,
        },
    ]
    ctx = {"form": form, "scope": scope, "report": report, "tables": tables}
    if not details:
        response = render(request, "conversations/costs.html#breakdown", ctx)
        patch_vary_headers(response, ["HX-Request"])  # one URL, two bodies: caches must tell them apart
        return response
    this_month = ledger.Period.this_month()
    last_month_end = this_month.start - timedelta(days=1)
    ctx["periods"] = [
        ("This month", this_month),
        ("Last month", ledger.Period(last_month_end.replace(day=1), last_month_end)),
        ("Last 90 days", ledger.Period.last_days(90)),
    ]
    ctx["chart"] = chart.cost_per_day(scope.period.days(), report.daily, labels)
    # The top conversations group every ledger row of the period, the page's slowest
    # part by far: the page links them (the template fetches them at once, see top_conversations).
    ctx["top_query"] = query
    ctx["usernames"] = sorted(g.filter for g in report.users if g.filter)[:1000]
    response = render(request, "conversations/costs.html", ctx)
    patch_vary_headers(response, ["HX-Request"])
    return response


@staff_required
def top_conversations(request):
    """The dashboard's "Top conversations" for its period and filter: the table alone for
    htmx (the dashboard loads it after itself), a page of its own otherwise."""
    form = CostFilterForm(request.GET, ledger.model_labels())
    if not form.is_valid():
        return HttpResponseBadRequest(" ".join(str(e) for errors in form.errors.values() for e in errors))
    scope = form.scope()
    ctx = {"scope": scope, "top": ledger.top_conversations(scope)}
    if request.htmx and not request.htmx.history_restore_request:
        response = render(request, "conversations/costs.html#top_conversations", ctx)
    else:
        response = render(request, "conversations/costs_top.html", ctx)
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- CSV exports ----------------------------------------------------------------------------

LEDGER_HEADER = [
    "time",
    "user",
    "conversation",
    "conversation_title",
    "message",
    "service",
    "model",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_input",
    "cost_output",
    "cost_total",
    "warnings",
    "status",
]
GROUP_HEADER = [
    "generations",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_input",
    "cost_output",
    "cost_total",
    "share_percent",
    "with_warnings",
]


# Said by the last line of an export that an error stopped midway (the response had
# started, so it could no longer become an error page). No comma: one plain cell.
CUT_SHORT = "EXPORT CUT SHORT: an error stopped it here and the rows above are not all of them. Download it again."

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection,
# e.g. a conversation title "=HYPERLINK(...)"): a quote in front keeps it text. Only
# text columns pass through _text(), so numbers stay exactly as they are.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _text(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Line:
    """csv.writer writes into this and gets the line back, so rows can stream."""

    def write(self, text: str) -> str:
        return text


def _csv_lines(header: list[str], rows: Iterable[list]) -> Iterator[str]:
    """The file, line by line. Once the response has started an error can no longer be
    an error page, and one raised into the server wedged Daphne: it is logged, and the
    file ends with a line saying it is incomplete."""
    writer = csv.writer(_Line())
    yield writer.writerow(header)
    try:
        for row in rows:
            yield writer.writerow(row)
    except Exception:
        log.exception("A CSV export stopped midway")
        yield writer.writerow([CUT_SHORT])


def _ledger_rows(scope: ledger.Scope) -> Iterator[list]:
    """One row per generation with a cost, and one per answer that ended with no cost
    reported (its tokens and cost empty, its status saying how it ended), so the file
    has what the dashboard counts; in time order, streamed from the database in chunks
    (never all in memory). The queries are built now, before the response starts; the
    stream only reads them."""
    logs = (
        scope.cost_logs()
        .order_by("created_at", "pk")
        .values_list(
            "created_at",
            "user__username",
            "conversation_id",
            "conversation__title",
            "message_id",
            "service_name",
            "model_name",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cost_input",
            "cost_output",
            "cost_total",
            "warnings",
            "message__status",
        )
        .iterator(chunk_size=2000)
    )
    no_cost = (
        scope.no_cost_messages()
        .order_by("created_at", "pk")
        .values_list(
            "created_at",
            "conversation__user__username",
            "conversation_id",
            "conversation__title",
            "pk",
            "service_name",
            "model_name",
            "warnings",
            "status",
        )
        .iterator(chunk_size=2000)
    )
    rows = heapq.merge(
        ((values[0], _ledger_row(*values)) for values in logs),
        ((values[0], _no_cost_row(*values)) for values in no_cost),
        key=lambda timed: timed[0],
    )
    return (row for _, row in rows)


def _ledger_row(created_at, username, conversation, title, message, service, model, tokens_in, tokens_out, tokens,
                cost_in, cost_out, cost, warnings, status) -> list:  # fmt: skip
    # No status: the answer went with its conversation (the ledger row stays).
    return [
        created_at.isoformat(), _text(username), conversation or "", _text(title), message or "",
        _text(service), _text(model), _number(tokens_in), _number(tokens_out), _number(tokens),
        plain(cost_in), plain(cost_out), plain(cost), _warnings(warnings), status or "",
    ]  # fmt: skip


def _no_cost_row(created_at, username, conversation, title, message, service, model, warnings, status) -> list:
    """An answer stopped, cut or failed before the gateway's final chunk: its cost is
    unknown (empty), never 0."""
    return [
        created_at.isoformat(), _text(username), conversation, _text(title), message,
        _text(service), _text(model), "", "", "", "", "", "", _warnings(warnings), status,
    ]  # fmt: skip


def _warnings(warnings) -> str:
    return _text(" | ".join(str(w) for w in warnings or []))


def _group_rows(groups: list[ledger.Group], key_columns) -> Iterator[list]:
    for group in groups:
        t = group.totals
        share = "" if t.share is None else plain(round(t.share, 4))
        yield [
            *key_columns(group), t.generations, t.input_tokens, t.output_tokens, t.tokens,
            plain(t.cost_input), plain(t.cost_output), plain(t.cost), share, t.warned,
        ]  # fmt: skip


def _number(value) -> str:
    return "" if value is None else str(value)


async def _async_chunks(lines: Iterator[str]):
    # Under ASGI (Daphne) a sync iterator would be read whole into memory first; this
    # pulls it a batch at a time in the request's thread, where its database cursor lives.
    next_batch = sync_to_async(lambda: "".join(islice(lines, 1000)))
    while batch := await next_batch():
        yield batch


@staff_required
def costs_csv(request, table: str):
    form = CostFilterForm(request.GET, ledger.model_labels())
    if not form.is_valid():
        return HttpResponseBadRequest(" ".join(str(e) for errors in form.errors.values() for e in errors))
    scope = form.scope()
    if table == "ledger":
        lines = _csv_lines(LEDGER_HEADER, _ledger_rows(scope))
    elif table == "users":
        total = ledger.totals_of(ledger.daily(scope, ["cost"]))
        groups = ledger.sort_groups(ledger.by_user(scope, total.cost, ledger.SUM_FIELDS), "-cost")
        lines = _csv_lines(["user", *GROUP_HEADER], _group_rows(groups, lambda g: [_text(g.label)]))
    elif table == "models":
        daily = ledger.daily(scope, ledger.SUM_FIELDS)
        groups = ledger.sort_groups(ledger.by_model(daily, ledger.totals_of(daily).cost), "-cost")
        lines = _csv_lines(
            ["service", "model", *GROUP_HEADER], _group_rows(groups, lambda g: [_text(k) for k in g.key])
        )
    else:
        return HttpResponse("Unknown export.", status=404, content_type="text/plain")
    period = scope.period
    filename = f"costs-{period.start}-to-{period.end}-{table}.csv"
    content = _async_chunks(lines) if isinstance(request, ASGIRequest) else lines
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- each user's own usage ------------------------------------------------------------------

USAGE_CONVERSATIONS = 50


@login_required
def usage(request):
    sections = []
    for title, period in (("This month", ledger.Period.this_month()), ("Last 90 days", ledger.Period.last_days(90))):
        scope = ledger.Scope(period, user_id=request.user.pk)  # the user's own rows, never anyone else's
        daily = ledger.daily(scope)
        totals = ledger.totals_of(daily)
        conversations = ledger.by_conversation(scope)
        sections.append(
            {
                "title": title,
                "period": period,
                "totals": totals,
                "no_cost": ledger.no_cost_reported(scope),
                "models": ledger.sort_groups(ledger.by_model(daily, totals.cost), "-cost"),
                "conversations": conversations[:USAGE_CONVERSATIONS],
                "more_conversations": max(0, len(conversations) - USAGE_CONVERSATIONS),
            }
        )
    ctx = {"sections": sections, "budget": budgets.state(request.user)}
    return render(request, "conversations/usage.html", ctx)
