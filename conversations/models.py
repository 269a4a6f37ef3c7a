from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone
from markdown_it import MarkdownIt
from markdown_it.token import Token

from conversations.costs.money import MoneyField, to_units
from conversations.gateway import ErrorKind
from conversations.keys import vault
from conversations.tree import Tree


class GatewayModel(models.Model):
    """One entry of the model catalogue: the gateway has no endpoint that lists them."""

    service_name = models.CharField(max_length=100)
    model_name = models.CharField(max_length=100)
    label = models.CharField(max_length=100)
    thinking = models.BooleanField(default=False, help_text="Streams its reasoning apart from the answer.")
    streaming = models.BooleanField(default=True, help_text="Off for image models, which use /generate.")
    enabled = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0, help_text="Order in the model picker.")

    class Meta:
        ordering = ["position", "label"]
        verbose_name = "model"
        constraints = [
            models.UniqueConstraint(fields=["service_name", "model_name"], name="unique_gateway_model"),
        ]

    def __str__(self) -> str:
        return self.label

    @classmethod
    def for_chat(cls):
        """The models a user can pick for a chat: streaming text models and image models
        (streaming off: they answer through POST /generate)."""
        return cls.objects.filter(enabled=True)


# A title needs the first line only: a long pasted message is not parsed whole for it.
TITLE_SOURCE_CHARS = 2000
# Raw HTML off: a `<b>` typed in a question is text, and stays in its title.
_title_markdown = MarkdownIt("commonmark", {"html": False}).enable("strikethrough")


def _first_line_read(text: str) -> str:
    """The first line of text as markdown shows it: a paragraph's, a heading's, a list
    item's or a quote's first line, or a code block's; "" if there is none."""
    for token in _title_markdown.parse(text):
        if token.type == "inline":
            line = _inline_text(token.children or [])
        elif token.type in ("fence", "code_block"):
            line = next((line for line in token.content.splitlines() if line.strip()), "")
        else:
            continue
        if line.strip():
            return line.strip()
    return ""


def _inline_text(tokens: list[Token]) -> str:
    """The text of inline tokens up to the first line break: emphasis marks dropped, code
    spans and link texts kept, an image as its alt text.

    Marks inside a word stay: markdown reads `2*3*4` as 2, an emphasised 3, and 4, but a
    question means the product.
    """
    parts: list[str] = []
    kept: list[bool] = []  # for each emphasis open, whether its marks stay
    for token in tokens:
        if token.type in ("softbreak", "hardbreak"):
            break
        if token.type in ("text", "code_inline"):
            parts.append(token.content)
        elif token.type == "image":
            parts.append(_inline_text(token.children or []))
        elif token.type in _EMPHASIS_OPEN:
            kept.append(bool(parts) and parts[-1][-1:].isalnum())
            parts.append(token.markup if kept[-1] else "")
        elif token.type in _EMPHASIS_CLOSE:
            parts.append(token.markup if kept and kept.pop() else "")
    return "".join(parts)


_EMPHASIS_OPEN = {"em_open", "strong_open", "s_open"}
_EMPHASIS_CLOSE = {"em_close", "strong_close", "s_close"}


class Conversation(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    model = models.ForeignKey(GatewayModel, models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # Settings (the "Settings" panel), sent as `parameters`: only what the user set.
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(2)],
        help_text="Empty: the model's own.",
    )
    max_output_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Empty: the model's own."
    )
    enable_thinking = models.BooleanField(default=True, help_text="Sent to thinking models only.")

    class Meta:
        ordering = ["-updated_at", "-id"]
        # The sidebar pages through a user's conversations by (updated_at, id), newest first.
        indexes = [models.Index(fields=["user", "-updated_at", "-id"], name="conversation_sidebar_page")]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("conversation", args=[self.pk])

    @staticmethod
    def title_from(text: str) -> str:
        """A new conversation's title: its first message's first line as it reads, without
        its markdown (heading, list and quote markers, emphasis, code spans, links), cut
        at 60 characters. Text that is nothing but syntax stays as written."""
        first_line = _first_line_read(text[:TITLE_SOURCE_CHARS]) or text.strip().splitlines()[0].strip()
        return first_line if len(first_line) <= 60 else first_line[:59].rstrip() + "…"

    # --- the tree of messages and the versions shown ---------------------------------

    def tree(self) -> Tree:
        """Every message's place (id, parent, selected), without the text."""
        return Tree(self.messages.only(*Tree.FIELDS))

    def thread(self) -> list[Message]:
        """The messages shown, oldest first, following the version shown at each branch,
        each annotated with its version number (see Tree.annotate)."""
        tree = self.tree()
        path = tree.path()
        full = (
            Message.objects.filter(pk__in=[m.pk for m in path])
            .select_related("cost_log")
            .prefetch_related("attachments")
            .in_bulk()
        )
        thread = [full[m.pk] for m in path]
        tree.annotate(thread)
        return thread

    def leaf(self) -> Message | None:
        """The last message shown: where the next question goes."""
        path = self.tree().path()
        return path[-1] if path else None

    def history(self, before: Message) -> list[Message]:
        """The turns before `before` to send as `history`, oldest first: the messages it
        follows in the tree (so the versions it was asked after), each answer with text.

        An answer with no text (failed before anything arrived) is left out.
        """
        tree = self.tree()
        ids = [m.pk for m in tree.ancestors(before.parent_id)]
        texts = Message.objects.only("id", "role", "content").in_bulk(ids)
        return [texts[pk] for pk in ids if texts[pk].role == Message.Role.USER or texts[pk].content]

    def cost_totals(self) -> dict:
        """What this conversation cost so far (the ledger's sums) and how many answers reported no cost."""
        totals = self.cost_logs.aggregate(
            cost=models.Sum("cost_total"), tokens=models.Sum("total_tokens"), generations=models.Count("id")
        )
        totals["no_cost"] = Message.no_cost_reported().filter(conversation=self).count()
        return totals

    def generating_message(self) -> Message | None:
        return self.messages.filter(status=Message.Status.STREAMING).last()

    def last_answer(self) -> Message | None:
        """The last answer shown (the end of the versions shown)."""
        path = self.tree().path()
        answers = [m for m in path if m.role == Message.Role.ASSISTANT]
        return Message.objects.get(pk=answers[-1].pk) if answers else None


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        STOPPED = "stopped"
        INTERRUPTED = "interrupted"
        FAILED = "failed"

    conversation = models.ForeignKey(Conversation, models.CASCADE, related_name="messages")
    # The message this one follows (None for the first question). Siblings are versions.
    parent = models.ForeignKey("self", models.CASCADE, null=True, blank=True, related_name="children")
    # The version shown among its siblings.
    selected = models.BooleanField(default=True)
    role = models.CharField(max_length=20, choices=Role.choices)
    content = models.TextField(blank=True, help_text="The user's text, or the answer.")
    thinking = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.COMPLETE)
    error = models.TextField(blank=True)
    # An ErrorKind value ("" for none), so the page can offer the right way out (a link
    # to the API keys page, a retry). No `choices`: the kinds belong to the gateway adapter.
    error_kind = models.CharField(max_length=30, blank=True)
    service_name = models.CharField(max_length=100, blank=True)
    model_name = models.CharField(max_length=100, blank=True)
    thinking_seconds = models.FloatField(null=True, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    # Chunks the gateway sent that are not shown (metadata), kept as received.
    extras = models.JSONField(default=list, blank=True)
    skipped_lines = models.PositiveIntegerField(default=0, help_text="Malformed data lines skipped.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    # Set by Tree.annotate for the page; these defaults describe a message with no other version.
    version_index = 1
    version_count = 1
    prev_version_id: int | None = None
    next_version_id: int | None = None
    has_children = False

    class Meta:
        ordering = ["created_at", "id"]
        # The cost pages count answers that ended without a cost by status and time.
        indexes = [models.Index(fields=["status", "created_at"], name="message_status_time")]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk}"

    def save(self, *args, append: bool = True, only_version: bool = False, **kwargs):
        """A new message without a parent follows the last message shown (append=False
        makes it a first question); a new selected message becomes the version shown
        (`only_version`: the caller knows it has no siblings, so none is unselected)."""
        adding = self._state.adding
        if adding and append and self.parent_id is None and self.conversation_id is not None:
            leaf = Conversation(pk=self.conversation_id).leaf()
            self.parent_id = leaf.pk if leaf else None
        super().save(*args, **kwargs)
        if adding and self.selected and not only_version:
            self.siblings().exclude(pk=self.pk).filter(selected=True).update(selected=False)

    def siblings(self):
        """This message's versions, itself included."""
        return Message.objects.filter(conversation_id=self.conversation_id, parent_id=self.parent_id)

    @property
    def is_streaming(self) -> bool:
        return self.status == self.Status.STREAMING

    # Failures a fresh attempt can cure: every kind but a refused key, an unknown model or a
    # bad request, which need a change first; and "", a stop or a failure of no known kind.
    RETRYABLE_KINDS = frozenset(ErrorKind) - {ErrorKind.KEY_REFUSED, ErrorKind.NOT_FOUND, ErrorKind.INVALID} | {""}

    @property
    def key_was_refused(self) -> bool:
        """For the page's link to the API keys page (templates compare no kind strings)."""
        return self.error_kind == ErrorKind.KEY_REFUSED

    @property
    def retryable(self) -> bool:
        return (
            self.role == self.Role.ASSISTANT
            and self.status in (self.Status.FAILED, self.Status.INTERRUPTED, self.Status.STOPPED)
            and self.error_kind in self.RETRYABLE_KINDS
        )

    def question(self) -> Message | None:
        """The user's message this answer answers."""
        if self.parent_id is None:
            return None
        return Message.objects.filter(pk=self.parent_id, role=self.Role.USER).first()

    @classmethod
    def no_cost_reported(cls) -> models.QuerySet[Message]:
        """Answers that ended without a final chunk, so without a CostLog row.

        Their cost is unknown, not zero: the cost pages count them apart.
        """
        return cls.objects.filter(
            role=cls.Role.ASSISTANT,
            status__in=[cls.Status.STOPPED, cls.Status.INTERRUPTED, cls.Status.FAILED],
            cost_log__isnull=True,
        )


class Attachment(models.Model):
    """A file an answer brought (an image model's picture), stored under MEDIA_ROOT and
    served only to the conversation's owner (views.attachment), never as public media."""

    message = models.ForeignKey(Message, models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to="attachments/", max_length=255)
    mime_type = models.CharField(max_length=50)
    size = models.PositiveIntegerField(help_text="Bytes.")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    # How it arrived: "base64", "data-uri" or "url" (then fetched from source_url).
    source = models.CharField(max_length=20)
    source_url = models.URLField(max_length=2000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.mime_type} attachment {self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("attachment", args=[self.pk])

    @property
    def filename(self) -> str:
        extension = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
        return f"image-{self.pk}.{extension.get(self.mime_type, 'bin')}"


class CostLogQuerySet(models.QuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        # Bulk inserts skip save(): their rollups are added here, in the same transaction.
        with transaction.atomic(using=self.db, savepoint=False):
            created = super().bulk_create(objs, *args, **kwargs)
            CostRollup.record(created)
        return created


class CostLog(models.Model):
    """The ledger: one row per generation that got a final chunk, as the gateway reported it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, related_name="+")
    conversation = models.ForeignKey(Conversation, models.SET_NULL, null=True, related_name="cost_logs")
    message = models.OneToOneField(Message, models.SET_NULL, null=True, related_name="cost_log")
    service_name = models.CharField(max_length=100)
    model_name = models.CharField(max_length=100)
    input_tokens = models.PositiveIntegerField(null=True)
    output_tokens = models.PositiveIntegerField(null=True)
    total_tokens = models.PositiveIntegerField(null=True)
    cost_input = MoneyField(null=True)
    cost_output = MoneyField(null=True)
    cost_total = MoneyField(null=True)
    warnings = models.JSONField(default=list, blank=True)
    # The final chunk as received, numbers as exact decimal strings.
    final_chunk = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = CostLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        # Time, user, model: the two indexes carry the columns the cost pages still read
        # from the ledger (the top conversations, the Usage page's conversations), so
        # SQLite answers from the index alone. The sums by day, user and model read
        # CostRollup (migration 0008 dropped 0004's SQLite index by UTC day for them).
        indexes = [
            models.Index(
                fields=[
                    "created_at",
                    "user",
                    "conversation",
                    "cost_total",
                    "total_tokens",
                    "service_name",
                    "model_name",
                ],
                name="costlog_time_totals",
            ),
            models.Index(fields=["user", "created_at", "cost_total", "total_tokens"], name="costlog_user_time_totals"),
            # The ledger in conversation order: over a long period the top conversations
            # read it whole without sorting (ledger.top_conversations).
            models.Index(
                fields=["conversation", "created_at", "service_name", "model_name", "cost_total", "total_tokens"],
                name="costlog_conversation_totals",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} {self.cost_total}"

    def save(self, *args, **kwargs):
        # The row and its day's rollup change together, or not at all.
        with transaction.atomic(savepoint=False):
            if not self._state.adding:
                CostRollup.record(CostLog.objects.filter(pk=self.pk), sign=-1)
            super().save(*args, **kwargs)
            CostRollup.record([self])


@receiver(post_delete, sender=CostLog)
def _unroll_cost_log(sender, instance: CostLog, **kwargs):
    """A deleted ledger row leaves its day's rollup (in the deleting transaction)."""
    CostRollup.record([instance], sign=-1)


_ROLLUP_SUMS = (
    "generations",
    "warned",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_input",
    "cost_output",
    "cost_total",
)


class CostRollup(models.Model):
    """The ledger summed per day, user and model, so the cost pages read days × users ×
    models rows instead of every generation (costs/ledger.py).

    Kept in step with the ledger in the same transaction as each ledger row: by
    CostLog.save(), CostLog.objects.bulk_create() and the deletion of a ledger row; a
    deleted user's rollups go to no user, as their ledger rows do (SET_NULL on both).
    QuerySet.update() on the ledger and raw SQL are not followed: after those, run
    `manage.py rebuild_cost_rollups`, which rebuilds them from the ledger.

    `day` is the ledger row's date in TIME_ZONE (the settings' default, UTC unless set),
    the same days the dashboard's periods and chart are made of. After changing
    TIME_ZONE, rebuild them: days already summed are not moved.

    Amounts are integer picounits like the ledger's, so every sum stays exact. Rows of
    ledger rows without a user are not merged (NULLs never conflict): several rows for
    one day and model may exist there, and every reader sums them.
    """

    day = models.DateField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, related_name="+")
    service_name = models.CharField(max_length=100)
    model_name = models.CharField(max_length=100)
    generations = models.BigIntegerField(default=0)
    warned = models.BigIntegerField(default=0, help_text="Generations with gateway warnings.")
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    cost_input = MoneyField(default=0)
    cost_output = MoneyField(default=0)
    cost_total = MoneyField(default=0)

    SUMS = _ROLLUP_SUMS

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "user", "service_name", "model_name"], name="unique_cost_rollup"),
        ]
        indexes = [
            # A period's rows in (day, model) order, with every sum: the per-day sums and
            # the user table read this index alone, and the former need no sort.
            models.Index(
                fields=["day", "service_name", "model_name", "user", *_ROLLUP_SUMS], name="costrollup_day_totals"
            ),
            # One user's days (their Usage page, their budget, the dashboard filtered by them).
            models.Index(fields=["user", "day"], name="costrollup_user_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.model_name} {self.cost_total}"

    @staticmethod
    def day_of(moment) -> date:
        return timezone.localtime(moment, timezone.get_default_timezone()).date()

    @classmethod
    def record(cls, logs: Iterable[CostLog], *, sign: int = 1) -> None:
        """Add ledger rows to their rollups (sign=-1: take them out). Call inside the
        transaction that writes or deletes them; one statement per day, user and model."""
        groups: dict[tuple, list[int]] = {}
        for log in logs:
            key = (cls.day_of(log.created_at), log.user_id, log.service_name, log.model_name)
            sums = groups.setdefault(key, [0] * len(cls.SUMS))
            values = (
                1,
                1 if log.warnings != [] else 0,  # as the ledger counts them: ~Q(warnings=[])
                log.input_tokens or 0,
                log.output_tokens or 0,
                log.total_tokens or 0,
                to_units(log.cost_input or 0),
                to_units(log.cost_output or 0),
                to_units(log.cost_total or 0),
            )
            for i, value in enumerate(values):
                sums[i] += sign * value
        for key, sums in groups.items():
            cls._add(key, sums)

    @classmethod
    def _add(cls, key: tuple, sums: list[int]) -> None:
        table = connection.ops.quote_name(cls._meta.db_table)
        day, user_id, service_name, model_name = key
        params = [connection.ops.adapt_datefield_value(day), user_id, service_name, model_name, *sums]
        columns = ", ".join(["day", "user_id", "service_name", "model_name", *cls.SUMS])
        placeholders = ", ".join(["%s"] * len(params))
        with connection.cursor() as cursor:
            if user_id is None:
                # NULLs never conflict: add to any one of the key's rows, else start one.
                added = ", ".join(f"{name} = {name} + %s" for name in cls.SUMS)
                cursor.execute(
                    f"UPDATE {table} SET {added} WHERE id = (SELECT MIN(id) FROM {table} WHERE day = %s "
                    "AND user_id IS NULL AND service_name = %s AND model_name = %s)",
                    [*sums, params[0], service_name, model_name],
                )
                if not cursor.rowcount:
                    cursor.execute(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", params)
                elif any(value < 0 for value in sums):
                    # The last of the key's ledger rows went: so do its rollups.
                    key_is = "day = %s AND user_id IS NULL AND service_name = %s AND model_name = %s"
                    cursor.execute(
                        f"DELETE FROM {table} WHERE {key_is} AND (SELECT SUM(generations) FROM {table} WHERE {key_is}) = 0",
                        [params[0], service_name, model_name] * 2,
                    )
                return
            # One statement, safe against a concurrent first row for the same key.
            added = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in cls.SUMS)
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "
                f"ON CONFLICT (day, user_id, service_name, model_name) DO UPDATE SET {added}",
                params,
            )
            if any(value < 0 for value in sums):
                # The last of a key's ledger rows went: so does its rollup.
                cursor.execute(
                    f"DELETE FROM {table} WHERE day = %s AND user_id = %s AND service_name = %s "
                    "AND model_name = %s AND generations = 0",
                    params[:4],
                )


class ApiKey(models.Model):
    """A user's own gateway key, encrypted at rest; only its mask is ever shown again."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="api_keys")
    label = models.CharField(max_length=100)
    ciphertext = models.TextField(editable=False)
    masked = models.CharField(max_length=40, editable=False)
    in_use = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    refused_at = models.DateTimeField(null=True, blank=True, help_text="When the gateway last refused it (401/403).")

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = "API key"
        constraints = [
            models.UniqueConstraint(fields=["user", "label"], name="unique_api_key_label"),
            models.UniqueConstraint(fields=["user"], condition=models.Q(in_use=True), name="one_api_key_in_use"),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.masked})"

    def set_secret(self, secret: str) -> None:
        self.ciphertext = vault.encrypt(secret)
        self.masked = vault.mask(secret)
        self.refused_at = None  # a new value deserves a new chance

    def reveal(self) -> str:
        """The key in clear: call only to build the gateway request."""
        return vault.decrypt(self.ciphertext)

    @property
    def refused(self) -> bool:
        return self.refused_at is not None

    @classmethod
    def for_user(cls, user) -> ApiKey | None:
        """The key the user's chats use: the one marked in use, else the newest."""
        return cls.objects.filter(user=user).order_by("-in_use", "-created_at", "-id").first()

    @classmethod
    def record_use(cls, pk: int, *, refused: bool, answered: bool) -> None:
        """When the key was last sent, and whether the gateway refused it (until it works again)."""
        now = timezone.now()
        changes: dict = {"last_used_at": now}
        if refused:
            changes["refused_at"] = now
        elif answered:
            changes["refused_at"] = None
        cls.objects.filter(pk=pk).update(**changes)

    @classmethod
    def secret_for(cls, user_id: int, key_id: int | None) -> str:
        """The key to send in clear (the user's, or the site's shared key for None): call
        only to build the gateway request."""
        if key_id is None:
            return SiteSettings.load().shared_key()
        return cls.objects.get(pk=key_id, user_id=user_id).reveal()

    def use(self) -> None:
        """Make this the key the user's chats use."""
        with transaction.atomic():
            ApiKey.objects.filter(user_id=self.user_id, in_use=True).exclude(pk=self.pk).update(in_use=False)
            self.in_use = True
            self.save(update_fields=["in_use"])


class SiteSettings(models.Model):
    """The site's shared gateway key and whether users without a key may use it (one row)."""

    shared_key_ciphertext = models.TextField(blank=True, editable=False)
    shared_key_masked = models.CharField(max_length=40, blank=True, editable=False)
    allow_shared_key = models.BooleanField(
        default=False,
        help_text="Users with no key of their own chat with the shared key (the one set here, else UPSTREAM_API_KEY).",
    )
    default_monthly_budget = MoneyField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Each user's monthly budget, unless they have one of their own (Budgets). Empty: no limit.",
    )

    class Meta:
        verbose_name = verbose_name_plural = "site settings"

    def __str__(self) -> str:
        return "Site settings"

    @classmethod
    def load(cls) -> SiteSettings:
        """The one row, whatever its id (the admin may have created it)."""
        return cls.objects.order_by("pk").first() or cls.objects.create()

    def set_shared_key(self, secret: str) -> None:
        self.shared_key_ciphertext = vault.encrypt(secret) if secret else ""
        self.shared_key_masked = vault.mask(secret) if secret else ""

    def shared_key(self) -> str:
        """The shared key in clear (the admin's, else UPSTREAM_API_KEY), or ""."""
        if self.shared_key_ciphertext:
            return vault.decrypt(self.shared_key_ciphertext)
        if settings.UPSTREAM_API_KEY:
            vault.remember(settings.UPSTREAM_API_KEY)
        return settings.UPSTREAM_API_KEY

    @property
    def has_shared_key(self) -> bool:
        return bool(self.shared_key_ciphertext or settings.UPSTREAM_API_KEY)

    @property
    def fallback_allowed(self) -> bool:
        # The demo gateway takes any key, so a new user can chat without one.
        return self.has_shared_key and (self.allow_shared_key or settings.DEMO_GATEWAY)


class Budget(models.Model):
    """A user's monthly spending limit; users without one get SiteSettings' default."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, models.CASCADE, related_name="budget")
    monthly_limit = MoneyField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="New answers pause when the month's spend reaches it. Empty: no limit for this user, "
        "whatever the default.",
    )

    def __str__(self) -> str:
        return f"Budget of {self.user}"


@receiver(post_delete, sender=Attachment)
def _delete_attachment_file(sender, instance: Attachment, **kwargs):
    """A deleted attachment's file goes too, once the deletion is committed (a conversation
    deleted with its messages sends this for each of its attachments)."""
    name, storage = instance.file.name, instance.file.storage
    if name:
        transaction.on_commit(lambda: storage.delete(name))
