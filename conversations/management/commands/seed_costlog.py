"""Fills the ledger with synthetic generations, for development and the dashboard benchmark.

    manage.py seed_costlog 1000000

Adds N CostLog rows over the last 90 days, in time order as a real ledger grows, across
100 users (seed-user-001 ... seed-user-100, created if missing, with no usable password)
and 5 models, with tiny exact costs priced per token like a real gateway's and a few
warnings. It also adds a few conversations per user for the rows to belong to, and one
answer in a hundred that ended without a final chunk ("no cost reported"), then rebuilds
the dashboard's daily rollups from the whole ledger in one statement.
"""

from __future__ import annotations

import math
import random
import time
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from conversations.costs import rollups
from conversations.costs.money import from_units
from conversations.models import Conversation, CostLog, CostRollup, Message

DAYS = 90
USERS = 100
# service, model, picounits per input token, per output token, relative traffic.
MODELS = [
    ("google-gemini", "gemini-2.0-flash", 100_000, 400_000, 45),
    ("openai", "gpt-4o-mini", 150_000, 600_000, 25),
    ("google-gemini", "gemini-3-pro-thinking-preview", 1_250_000, 10_000_000, 15),
    ("anthropic", "claude-haiku-4-5", 1_000_000, 5_000_000, 10),
    ("google-gemini", "gemini-2.5-flash-image", 300_000, 2_500_000, 5),
]
WARNINGS = ["Rate limit: 3 requests left this minute", "Rate limit: 1 request left this minute"]


def _tokens(rng: random.Random, low: int, high: int) -> int:
    """Log-uniform: mostly short exchanges, a few long ones."""
    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


class Command(BaseCommand):
    help = "Add N synthetic CostLog rows over the last 90 days, across 100 users and 5 models."

    def add_arguments(self, parser):
        parser.add_argument("rows", type=int, help="How many ledger rows to add, e.g. 1000000.")
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument("--random-seed", type=int, default=None, help="For a repeatable ledger.")

    def handle(self, *args, rows: int, batch_size: int, random_seed: int | None, **options):
        if rows < 0:
            raise CommandError("N must be 0 or more.")
        rng = random.Random(random_seed)
        started = time.monotonic()
        now = timezone.now()
        first = now - timedelta(days=DAYS)
        span = (now - first).total_seconds()
        with transaction.atomic():
            users = self._users()
            conversations = self._conversations(users, per_user=max(1, min(20, rows // 1000)))
            # Sorted times: rows arrive in time order, as in a real ledger.
            times = sorted(rng.random() for _ in range(rows))
            weights = [m[4] for m in MODELS]
            for offset in range(0, rows, batch_size):
                batch = []
                for fraction in times[offset : offset + batch_size]:
                    user = rng.choice(users)
                    service, model, price_in, price_out, _ = rng.choices(MODELS, weights)[0]
                    tokens_in = _tokens(rng, 1, 4000)
                    tokens_out = _tokens(rng, 1, 1500)
                    cost_in, cost_out = tokens_in * price_in, tokens_out * price_out
                    batch.append(
                        CostLog(
                            user_id=user,
                            conversation_id=rng.choice(conversations[user]),
                            service_name=service,
                            model_name=model,
                            input_tokens=tokens_in,
                            output_tokens=tokens_out,
                            total_tokens=tokens_in + tokens_out,
                            cost_input=from_units(cost_in),
                            cost_output=from_units(cost_out),
                            cost_total=from_units(cost_in + cost_out),
                            warnings=[rng.choice(WARNINGS)] if rng.random() < 0.02 else [],
                            created_at=first + timedelta(seconds=fraction * span),
                        )
                    )
                # Plain inserts: the rollups are built in one statement at the end.
                QuerySet[CostLog](CostLog).bulk_create(batch)
                done = min(offset + batch_size, rows)
                if done % 100_000 < batch_size:
                    self.stdout.write(f"  {done:,} rows…")
            no_cost = self._no_cost_answers(rng, conversations, rows // 100, first, span)
            rollups.rebuild(CostLog, CostRollup)
        self.stdout.write(
            f"Added {rows:,} ledger rows over the last {DAYS} days ({len(users)} users, {len(MODELS)} models, "
            f"{sum(map(len, conversations.values())):,} conversations) and {no_cost:,} answers with no cost "
            f"reported, in {time.monotonic() - started:.1f} s."
        )

    def _users(self) -> list[int]:
        User = get_user_model()
        names = [f"seed-user-{i:03}" for i in range(1, USERS + 1)]
        existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
        unusable = make_password(None)  # nobody logs in as a seeded user
        User.objects.bulk_create(User(username=name, password=unusable) for name in names if name not in existing)
        return list(User.objects.filter(username__in=names).order_by("username").values_list("pk", flat=True))

    def _conversations(self, users: list[int], per_user: int) -> dict[int, list[int]]:
        now = timezone.now()
        Conversation.objects.bulk_create(
            Conversation(user_id=user, title=f"Seeded chat {i + 1}", created_at=now, updated_at=now)
            for user in users
            for i in range(per_user)
        )
        by_user: dict[int, list[int]] = {user: [] for user in users}
        for pk, user in Conversation.objects.filter(user_id__in=users, title__startswith="Seeded chat ").values_list(
            "pk", "user_id"
        ):
            by_user[user].append(pk)
        return by_user

    def _no_cost_answers(self, rng, conversations, count: int, first, span: float) -> int:
        """Answers that were stopped, cut or failed: they have no CostLog row."""
        statuses = [Message.Status.STOPPED, Message.Status.INTERRUPTED, Message.Status.FAILED]
        users = list(conversations)
        messages = []
        for _ in range(count):
            service, model, *_ = rng.choices(MODELS, [m[4] for m in MODELS])[0]
            status = rng.choice(statuses)
            messages.append(
                Message(
                    conversation_id=rng.choice(conversations[rng.choice(users)]),
                    role=Message.Role.ASSISTANT,
                    status=status,
                    error="The gateway's answer ended before it was complete." if status != "stopped" else "",
                    service_name=service,
                    model_name=model,
                    created_at=first + timedelta(seconds=rng.random() * span),
                )
            )
        Message.objects.bulk_create(messages, batch_size=5000)
        return count
