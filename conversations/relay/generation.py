"""The life of one generation, from the user's message to the stored answer.

`start()` (a new turn), `regenerate()` (a fresh answer to the same question: a new
version of the answer; Retry after a failure is the same thing) and `edit()` (a new
version of a question, then a fresh answer to it) store an empty answer with status
streaming, then relay the gateway's answer in a task of its own, so the consumer that
called them stays free to take a Stop. The task

1. reads the stream through the gateway adapter (retrying with backoff while nothing
   has arrived, never after) and keeps answer and thinking in memory;
2. coalesces the text that arrives into numbered deltas and sends each to the
   conversation's Channels group (the first chunk after a quiet spell goes at once, later
   ones wait at most STREAM_FLUSH_INTERVAL), where every socket showing the conversation
   turns it into an htmx swap;
3. checkpoints the text to the database about once a second, never once per chunk, and
   touches the answer every few seconds of silence so other processes can tell it lives;
4. ends with the text, the status, the images and the CostLog row in one transaction,
   then tells the group the answer is done.

Image models (streaming off) go through the same task: the gateway's whole answer
arrives at once from POST /generate (the page shows a progress indicator meanwhile),
its images are checked by their bytes and stored as Attachments, and Stop, retries,
faults and the ledger work as for a stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations import gateway, images
from conversations.keys import vault
from conversations.models import (
    ApiKey,
    Attachment,
    Conversation,
    CostLog,
    GatewayModel,
    Message,
    SiteSettings,
)

log = logging.getLogger(__name__)

# Running generations by answer id. It also keeps each task referenced: asyncio holds
# only a weak reference to a task, which could otherwise be collected mid-stream.
_running: dict[int, Generation] = {}

# Failures worth retrying automatically, as long as nothing has arrived yet.
RETRYABLE = {"connect", "timeout", "server"}


@dataclass(frozen=True)
class Snapshot:
    """What a socket that joins mid-answer shows before it applies later deltas."""

    seq: int
    answer: str
    thinking: str


class Generation:
    def __init__(self, answer: Message, body: dict, user_id: int, api_key_id: int | None, streaming: bool = True):
        self.streaming = streaming  # False: an image model, answering through /generate
        self.message_id = answer.pk
        self.conversation_id = answer.conversation_id
        self.user_id = user_id
        self.service_name = answer.service_name
        self.model_name = answer.model_name
        self.group = Conversation.group_name_for(answer.conversation_id)
        self.body = body
        self.api_key_id = api_key_id  # the user's ApiKey, or None for the site's shared key
        self.layer = get_channel_layer()

        self.received = False  # anything arrived: from now on, never retry silently
        self.seq = 0  # number of the last delta sent
        self.answer: list[str] = []  # text already sent as deltas
        self.thinking: list[str] = []
        self._pending_answer: list[str] = []  # arrived, not sent yet
        self._pending_thinking: list[str] = []
        self._status_shown = False
        self._wake = asyncio.Event()
        self._reading = True
        self._stop_requested = False

        self.final: gateway.Final | None = None
        self.extras: list[dict] = []
        self.skipped = 0
        self._thinking_started: float | None = None
        self.thinking_seconds: float | None = None
        self._thinking_seconds_sent = False
        self.images: list[images.CheckedImage] = []  # checked, stored when the answer ends
        self.image_errors: list[str] = []

        self._reader: asyncio.Task | None = None
        self.task: asyncio.Task | None = None
        self.channel = ""  # this generation's own channel, for stop and snapshot requests

    # --- what the consumer calls ---------------------------------------------------

    def snapshot(self) -> Snapshot:
        return Snapshot(self.seq, "".join(self.answer), "".join(self.thinking))

    def stop(self) -> None:
        """Cancel the gateway request (once: a double cancel can leak a connection)."""
        if self._reader and not self._stop_requested:
            self._stop_requested = True
            self._reader.cancel()

    async def _listen(self, channel: str) -> None:
        """Requests from sockets in any process: stop, and "what have you got so far?"."""
        while True:
            event = await self.layer.receive(channel)
            if event["type"] == "generation.stop":
                self.stop()
            elif event["type"] == "generation.snapshot":
                snapshot = self.snapshot()
                await self.layer.send(
                    event["reply_to"],
                    {
                        "type": "chat.catch_up",
                        "message": self.message_id,
                        "seq": snapshot.seq,
                        "answer": snapshot.answer,
                        "thinking": snapshot.thinking,
                    },
                )

    # --- the task ------------------------------------------------------------------

    async def listen_for_control(self) -> None:
        """Join the control group before the turn is announced, so no request is missed."""
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(control_group(self.message_id), self.channel)

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen(self.channel))
        try:
            self._reader = asyncio.create_task(self._read())
            sender = asyncio.create_task(self._send_loop())
            await asyncio.wait([self._reader])
            status, error, error_kind = self._outcome()
            self._reading = False
            self._wake.set()
            await sender
            await self._save_end(status, error, error_kind)
        except Exception:
            log.exception("Generation %s failed unexpectedly", self.message_id)
            await self._save_end(Message.Status.FAILED, "Something went wrong while relaying the answer.", "")
        finally:
            listener.cancel()
            await self.layer.group_discard(control_group(self.message_id), self.channel)
            _running.pop(self.message_id, None)
            await self.layer.group_send(self.group, {"type": "chat.done", "message": self.message_id})
            await self.layer.group_send(
                Conversation.user_group_name(self.user_id),
                {"type": "sidebar.update", "conversation": self.conversation_id},
            )

    def _outcome(self) -> tuple[str, str, str]:
        """The answer's status, error text and error kind, from how the reader ended."""
        if self.final is not None:
            got_something = bool(self.images or self.answer or self._pending_answer)
            if self.image_errors:
                # Paid for, so the ledger row stays; what was refused is said.
                status = Message.Status.COMPLETE if got_something else Message.Status.FAILED
                return status, " ".join(self.image_errors), "image"
            if not self.streaming and not got_something:
                return Message.Status.FAILED, "The gateway's answer had no text and no image.", "empty"
            return Message.Status.COMPLETE, "", ""
        if self._reader.cancelled():
            return Message.Status.STOPPED, "", ""
        exc = self._reader.exception()
        if exc is None:  # the adapter raises when no final chunk came; be safe anyway
            exc = gateway.GatewayError("incomplete", "The gateway's answer ended before it was complete.")
        if isinstance(exc, (ApiKey.DoesNotExist, vault.UndecryptableKey)):
            log.error("Generation %s: %s", self.message_id, exc)
            return Message.Status.FAILED, "Your API key could not be read. Add it again on the API keys page.", "key_refused"
        if not isinstance(exc, gateway.GatewayError):
            log.error("Generation %s: unexpected error", self.message_id, exc_info=exc)
            return Message.Status.FAILED, "Something went wrong while reading the gateway's answer.", ""
        got_text = bool(self.answer or self._pending_answer or self.thinking or self._pending_thinking)
        if got_text and exc.kind in ("cut", "incomplete", "timeout", "stream_error"):
            # Part of an answer: kept, marked incomplete, a fresh one offered.
            return Message.Status.INTERRUPTED, exc.message, exc.kind
        return Message.Status.FAILED, exc.message, exc.kind

    @database_sync_to_async
    def _reveal_key(self) -> str:
        """Decrypted here, at the last moment, and held only by the request."""
        if self.api_key_id is None:
            return SiteSettings.load().shared_key()
        return ApiKey.objects.get(pk=self.api_key_id, user_id=self.user_id).reveal()

    async def _read(self) -> None:
        client = gateway.get_client(gateway.default_timeout(read=settings.UPSTREAM_READ_TIMEOUT))
        api_key = await self._reveal_key()
        attempts = settings.UPSTREAM_RETRIES + 1
        for attempt in range(1, attempts + 1):
            try:
                if self.streaming:
                    await self._read_stream(client, api_key)
                else:
                    await self._read_once(client, api_key)
                return
            except gateway.GatewayError as exc:
                # Unlike the gateway's example client, never restart once text has
                # arrived: the user would see it twice.
                if self.received or exc.kind not in RETRYABLE or attempt == attempts:
                    raise
                delay = settings.UPSTREAM_RETRY_BACKOFF * 2 ** (attempt - 1)
                await self._show_status(
                    f"{exc.message} Trying again in {delay:g} s (attempt {attempt + 1} of {attempts})."
                )
                await asyncio.sleep(delay)

    async def _read_stream(self, client, api_key: str) -> None:
        stream = gateway.stream_generate(
            base_url=settings.UPSTREAM_BASE_URL, api_key=api_key, body=self.body, client=client
        )
        async for item in stream:
            self.received = True
            if isinstance(item, gateway.Delta):
                if item.name == "thinking":
                    if self._thinking_started is None:
                        self._thinking_started = time.monotonic()
                    self._pending_thinking.append(item.text)
                else:
                    if self._thinking_started is not None and self.thinking_seconds is None:
                        self.thinking_seconds = round(time.monotonic() - self._thinking_started, 1)
                    self._pending_answer.append(item.text)
                self._wake.set()
            elif isinstance(item, gateway.Final):
                self.final = item
            elif isinstance(item, gateway.Extra):
                self.extras.append(item.chunk)
            elif isinstance(item, gateway.Skipped):
                self.skipped += 1

    async def _read_once(self, client, api_key: str) -> None:
        """An image model's whole answer, from POST /generate."""
        result = await gateway.generate(
            base_url=settings.UPSTREAM_BASE_URL,
            api_key=api_key,
            body=self.body,
            client=client,
            # base64 takes 4/3 of the bytes; room for several images and some text.
            max_bytes=settings.MAX_IMAGE_BYTES * 6 + 1_048_576,
        )
        self.received = True
        self.final = result.final  # paid for: the ledger row is written whatever follows
        self.extras.extend(result.extras)
        if result.thinking:
            self._pending_thinking.append(result.thinking)
        if result.text:
            self._pending_answer.append(result.text)
        self._wake.set()
        for image in result.images:
            await self._take_image(image, client)

    async def _take_image(self, image: gateway.Image, client) -> None:
        """Fetch (if a URL), check by the bytes, and keep for the end; or say why not."""
        if image.error:
            self.image_errors.append(image.error + " It was not kept.")
            return
        data = image.data
        if image.url:
            try:
                data, _ = await gateway.fetch_image(
                    image.url, client=client, max_bytes=settings.MAX_IMAGE_BYTES, timeout=settings.IMAGE_FETCH_TIMEOUT
                )
            except gateway.GatewayError as exc:
                self.image_errors.append(f"{exc.message} It was not kept.")
                return
        try:
            checked = await asyncio.to_thread(images.check, data, source=image.source, source_url=image.url or "")
        except images.RejectedImage as exc:
            self.image_errors.append(str(exc))
            return
        self.images.append(checked)

    async def _show_status(self, text: str) -> None:
        self._status_shown = True
        await self.layer.group_send(self.group, {"type": "chat.status", "message": self.message_id, "text": text})

    async def _send_loop(self) -> None:
        last_checkpoint = time.monotonic()
        dirty = False
        while True:
            try:
                # Wake for new text, or after a spell of silence to say we are alive.
                async with asyncio.timeout(settings.STREAM_HEARTBEAT_INTERVAL):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            dirty = await self._flush() or dirty
            if not self._reading:
                # The reader may have ended while that flush was being sent: what it
                # added meanwhile goes as one more delta (else only "done" would show it).
                await self._flush()
                return
            since = time.monotonic() - last_checkpoint
            if (dirty and since >= settings.STREAM_CHECKPOINT_INTERVAL) or since >= settings.STREAM_HEARTBEAT_INTERVAL:
                await self._checkpoint()
                last_checkpoint, dirty = time.monotonic(), False
            # Whatever arrives while we sleep leaves as one frame.
            await asyncio.sleep(settings.STREAM_FLUSH_INTERVAL)

    async def _flush(self) -> bool:
        if not (self._pending_answer or self._pending_thinking):
            return False
        answer = "".join(self._pending_answer)
        thinking = "".join(self._pending_thinking)
        self._pending_answer.clear()
        self._pending_thinking.clear()
        if answer:
            self.answer.append(answer)
        if thinking:
            self.thinking.append(thinking)
        self.seq += 1
        event = {
            "type": "chat.delta",
            "message": self.message_id,
            "seq": self.seq,
            "answer": answer,
            "thinking": thinking,
        }
        if self.thinking_seconds is not None and not self._thinking_seconds_sent:
            event["thinking_seconds"] = self.thinking_seconds
            self._thinking_seconds_sent = True
        if self._status_shown:  # a retry notice, now out of date
            event["clear_status"] = True
            self._status_shown = False
        await self.layer.group_send(self.group, event)
        return True

    def _texts(self) -> tuple[str, str]:
        return (
            "".join(self.answer) + "".join(self._pending_answer),
            "".join(self.thinking) + "".join(self._pending_thinking),
        )

    @database_sync_to_async
    def _checkpoint(self) -> None:
        answer, thinking = self._texts()
        Message.objects.filter(pk=self.message_id).update(
            content=answer, thinking=thinking, updated_at=timezone.now()
        )

    @database_sync_to_async
    def _save_end(self, status: str, error: str, error_kind: str) -> None:
        answer, thinking = self._texts()
        if self._thinking_started is not None and self.thinking_seconds is None:
            # Thought until the end: it never got to an answer.
            self.thinking_seconds = round(time.monotonic() - self._thinking_started, 1)
        final = self.final
        # Files first (a failed transaction leaves a file behind, never a row without one).
        stored = [(image, images.store(image, self.user_id)) for image in self.images]
        with transaction.atomic():
            Attachment.objects.bulk_create(
                Attachment(
                    message_id=self.message_id,
                    file=name,
                    mime_type=image.mime_type,
                    size=image.size,
                    width=image.width,
                    height=image.height,
                    source=image.source,
                    source_url=image.source_url[:2000],
                )
                for image, name in stored
            )
            Message.objects.filter(pk=self.message_id).update(
                content=answer,
                thinking=thinking,
                status=status,
                error=error,
                error_kind=error_kind,
                thinking_seconds=self.thinking_seconds,
                warnings=final.warnings if final else [],
                extras=_jsonable(self.extras),
                skipped_lines=self.skipped,
                updated_at=timezone.now(),
            )
            if self.api_key_id is not None:
                self._record_key_use(error_kind)
            if final is not None:
                CostLog.objects.create(
                    user_id=self.user_id,
                    conversation_id=self.conversation_id,
                    message_id=self.message_id,
                    service_name=self.service_name,
                    model_name=self.model_name,
                    input_tokens=final.input_tokens,
                    output_tokens=final.output_tokens,
                    total_tokens=final.total_tokens,
                    cost_input=final.cost_input,
                    cost_output=final.cost_output,
                    cost_total=final.cost_total,
                    warnings=final.warnings,
                    final_chunk=_jsonable(final.raw),
                )

    def _record_key_use(self, error_kind: str) -> None:
        """When the key was last used, and whether the gateway refused it (until it works again)."""
        now = timezone.now()
        changes = {"last_used_at": now}
        if error_kind == "key_refused":
            changes["refused_at"] = now
        elif self.received:
            changes["refused_at"] = None
        ApiKey.objects.filter(pk=self.api_key_id).update(**changes)


def _jsonable(value):
    """Decimals as exact strings, so JSONField keeps every digit the gateway sent."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


# --- what the consumer and the views call ------------------------------------------


def control_group(message_id: int) -> str:
    """The group a running generation listens on, in whichever process runs it."""
    return f"generation-{message_id}"


def running(message_id: int) -> Generation | None:
    """The generation if this process runs it (tests and the benchmark look inside)."""
    return _running.get(message_id)


async def stop(message_id: int) -> None:
    """Ask the generation to stop, wherever it runs."""
    await get_channel_layer().group_send(control_group(message_id), {"type": "generation.stop"})


async def request_snapshot(message_id: int, reply_to: str) -> None:
    """Ask the generation for its text so far; it answers `reply_to` with chat.catch_up."""
    await get_channel_layer().group_send(
        control_group(message_id), {"type": "generation.snapshot", "reply_to": reply_to}
    )


RESTART_ERROR = "The server restarted while this answer was being generated; the text above is what had arrived."


def sweep_orphans(user_id: int) -> int:
    """Mark the user's answers left streaming by a process that died as interrupted.

    With one process (no REDIS_URL) an answer this process is not running has no
    owner. With several, only an answer silent for longer than STREAM_ORPHAN_AFTER is
    (the owner touches it every STREAM_HEARTBEAT_INTERVAL). The checkpointed text stays.
    """
    orphans = Message.objects.filter(conversation__user_id=user_id, status=Message.Status.STREAMING).exclude(
        pk__in=list(_running)
    )
    if settings.REDIS_URL:
        orphans = orphans.filter(updated_at__lt=timezone.now() - timedelta(seconds=settings.STREAM_ORPHAN_AFTER))
    return orphans.update(
        status=Message.Status.INTERRUPTED, error=RESTART_ERROR, error_kind="restart", updated_at=timezone.now()
    )


@database_sync_to_async
def _store_turn(user, conversation: Conversation | None, model: GatewayModel, text: str, settings_data: dict | None):
    """Save the user's message and the empty answer before the gateway is called.

    The question follows the last message shown; `settings_data` (cleaned by
    forms.SettingsForm) are a new conversation's settings.
    """
    now = timezone.now()
    with transaction.atomic():
        if conversation is None:
            conversation = Conversation(user=user, title=Conversation.title_from(text), model=model, created_at=now,
                                        updated_at=now)
            for field, value in (settings_data or {}).items():
                setattr(conversation, field, value)
            conversation.save()
            parent = None
        else:
            conversation.model = model
            conversation.updated_at = now
            fields = ["model", "updated_at"]
            if not conversation.title:
                conversation.title = Conversation.title_from(text)
                fields.append("title")
            conversation.save(update_fields=fields)
            parent = conversation.leaf()
        question = Message(conversation=conversation, parent=parent, role=Message.Role.USER, content=text, created_at=now)
        question.save(append=False)
        answer = _new_answer(conversation, question, model, now)
        history = conversation.history(before=question)
    return conversation, question, answer, history, parent.pk if parent else None


@database_sync_to_async
def _store_regenerate(answer: Message, model: GatewayModel):
    """A new version of `answer`: a sibling of it, shown from now on."""
    now = timezone.now()
    with transaction.atomic():
        conversation = Conversation.objects.get(pk=answer.conversation_id)
        question = answer.question()
        fresh = _new_answer(conversation, question, model, now)
        conversation.model = model
        conversation.updated_at = now
        conversation.save(update_fields=["model", "updated_at"])
        history = conversation.history(before=question)
    return conversation, question, fresh, history


@database_sync_to_async
def _store_edit(question: Message, text: str, model: GatewayModel):
    """A new version of `question` (a sibling of it, shown from now on) and an empty answer to it."""
    now = timezone.now()
    with transaction.atomic():
        conversation = Conversation.objects.get(pk=question.conversation_id)
        edited = Message(
            conversation=conversation, parent_id=question.parent_id, role=Message.Role.USER, content=text, created_at=now
        )
        edited.save(append=False)
        # Its branch is the one shown now, up to the first question.
        conversation.tree().show(edited)
        answer = _new_answer(conversation, edited, model, now)
        conversation.model = model
        conversation.updated_at = now
        conversation.save(update_fields=["model", "updated_at"])
        history = conversation.history(before=edited)
    return conversation, edited, answer, history


def _new_answer(conversation: Conversation, question: Message, model: GatewayModel, now) -> Message:
    answer = Message(
        conversation=conversation,
        parent=question,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        service_name=model.service_name,
        model_name=model.model_name,
        created_at=now,
    )
    answer.save(append=False)
    return answer


async def start(
    *,
    user,
    conversation: Conversation | None,
    model: GatewayModel,
    text: str,
    api_key_id: int | None,
    channel_name: str,
    settings_data: dict | None = None,
) -> Conversation:
    """Store the turn, tell the group about it, and relay the answer in its own task.

    `conversation` is None for a new chat (then `settings_data` are its settings);
    `channel_name` (the calling socket) joins the conversation's group first, so it sees
    the turn and every delta in order. `api_key_id` is the user's key to send, or None
    for the site's shared key.
    """
    new = conversation is None
    conversation, question, answer, history, previous = await _store_turn(user, conversation, model, text, settings_data)
    await _launch(user, conversation, question, answer, history, model, api_key_id, channel_name, new=new,
                  previous=previous)
    return conversation


async def regenerate(*, user, answer: Message, model: GatewayModel, api_key_id: int | None, channel_name: str) -> None:
    """A fresh answer to the question `answer` answered, as a new version of it: the old
    one is kept as it is (the page shows "‹ 2/2 ›"). Retry after a failure is this."""
    conversation, question, fresh, history = await _store_regenerate(answer, model)
    await _launch(user, conversation, question, fresh, history, model, api_key_id, channel_name, new=False,
                  thread=True)


async def retry(*, user, answer: Message, model: GatewayModel, api_key_id: int | None, channel_name: str) -> None:
    """A fresh answer after a failed or interrupted one: a regeneration."""
    await regenerate(user=user, answer=answer, model=model, api_key_id=api_key_id, channel_name=channel_name)


async def edit(*, user, question: Message, text: str, model: GatewayModel, api_key_id: int | None,
               channel_name: str) -> None:
    """A new version of `question` with `text`, and a fresh answer to it; the old question
    and everything after it are kept as the other version."""
    conversation, edited, answer, history = await _store_edit(question, text, model)
    await _launch(user, conversation, edited, answer, history, model, api_key_id, channel_name, new=False,
                  thread=True)


async def _launch(user, conversation, question, answer, history, model, api_key_id, channel_name, *, new,
                  thread=False, previous=None):
    body = gateway.build_body(
        service_name=model.service_name,
        model_name=model.model_name,
        prompt=question.content,
        history=[gateway.history_turn(m.role, m.content) for m in history],
        parameters=gateway.build_parameters(
            enable_thinking=conversation.enable_thinking if model.thinking else None,
            system_prompt=conversation.system_prompt,
            temperature=conversation.temperature,
            max_output_tokens=conversation.max_output_tokens,
        ),
    )
    generation = Generation(answer, body, user.pk, api_key_id, streaming=model.streaming)
    _running[answer.pk] = generation
    await generation.listen_for_control()
    layer = get_channel_layer()
    await layer.group_add(conversation.group_name, channel_name)
    # Sent before the task exists, so no delta can overtake it. A new version redraws
    # the messages shown (from the branch on); a new turn is appended.
    await layer.group_send(
        conversation.group_name,
        {
            "type": "chat.turn",
            "conversation": conversation.pk,
            "question": question.pk,
            "answer": answer.pk,
            "model_name": answer.model_name,
            "thread": thread,
            "previous": previous,
        },
    )
    await layer.group_send(
        Conversation.user_group_name(user.pk),
        {"type": "sidebar.update", "conversation": conversation.pk, "new": new, "origin": channel_name},
    )
    generation.task = asyncio.create_task(generation.run())
