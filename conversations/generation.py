"""The life of one generation, from the user's message to the stored answer.

`start()` stores the user's message and an empty answer (status streaming), then relays
the gateway's stream in a task of its own, so the consumer that called it stays free to
take a Stop. The task

1. reads the stream through the gateway adapter and keeps answer and thinking in memory;
2. coalesces the text that arrives into numbered deltas and sends each to the
   conversation's Channels group (the first chunk after a quiet spell goes at once, later
   ones wait at most STREAM_FLUSH_INTERVAL), where every socket showing the conversation
   turns it into an htmx swap;
3. checkpoints the text to the database about once a second, never once per chunk;
4. ends with the text, the status and the CostLog row in one transaction, then tells the
   group the answer is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from decimal import Decimal

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations import gateway, vault
from conversations.models import ApiKey, Conversation, CostLog, GatewayModel, Message, SiteSettings

log = logging.getLogger(__name__)

# Running generations by answer id. It also keeps each task referenced: asyncio holds
# only a weak reference to a task, which could otherwise be collected mid-stream.
_running: dict[int, Generation] = {}


@dataclass(frozen=True)
class Snapshot:
    """What a socket that joins mid-answer shows before it applies later deltas."""

    seq: int
    answer: str
    thinking: str


class Generation:
    def __init__(self, answer: Message, group: str, body: dict, user_id: int, api_key_id: int | None):
        self.message_id = answer.pk
        self.conversation_id = answer.conversation_id
        self.user_id = user_id
        self.service_name = answer.service_name
        self.model_name = answer.model_name
        self.group = group
        self.body = body
        self.api_key_id = api_key_id  # the user's ApiKey, or None for the site's shared key
        self.key_accepted = False  # the gateway answered with a stream
        self.layer = get_channel_layer()

        self.seq = 0  # number of the last delta sent
        self.answer: list[str] = []  # text already sent as deltas
        self.thinking: list[str] = []
        self._pending_answer: list[str] = []  # arrived, not sent yet
        self._pending_thinking: list[str] = []
        self._wake = asyncio.Event()
        self._reading = True
        self._stop_requested = False

        self.final: gateway.Final | None = None
        self.extras: list[dict] = []
        self.skipped = 0
        self._thinking_started: float | None = None
        self.thinking_seconds: float | None = None
        self._thinking_seconds_sent = False

        self._reader: asyncio.Task | None = None
        self.task: asyncio.Task | None = None

    # --- what the consumer calls ---------------------------------------------------

    def snapshot(self) -> Snapshot:
        return Snapshot(self.seq, "".join(self.answer), "".join(self.thinking))

    def stop(self) -> None:
        """Cancel the gateway request (once: a double cancel can leak a connection)."""
        if self._reader and not self._stop_requested:
            self._stop_requested = True
            self._reader.cancel()

    # --- the task ------------------------------------------------------------------

    async def run(self) -> None:
        try:
            self._reader = asyncio.create_task(self._read())
            sender = asyncio.create_task(self._send_loop())
            await asyncio.wait([self._reader])
            status, error, error_kind = self._outcome()
            self._reading = False
            self._wake.set()
            await sender
            await self._save_end(status, error, error_kind)
            await self.layer.group_send(self.group, {"type": "chat.done", "message": self.message_id})
        except Exception:
            log.exception("Generation %s failed unexpectedly", self.message_id)
            await self._save_end(Message.Status.FAILED, "Something went wrong while relaying the answer.", "")
            await self.layer.group_send(self.group, {"type": "chat.done", "message": self.message_id})
        finally:
            _running.pop(self.message_id, None)

    def _outcome(self) -> tuple[str, str, str]:
        """The answer's status, error text and error kind, from how the reader ended."""
        if self.final is not None:
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
        if got_text and exc.kind in ("cut", "incomplete", "timeout"):
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
        stream = gateway.stream_generate(
            base_url=settings.UPSTREAM_BASE_URL, api_key=await self._reveal_key(), body=self.body, client=client
        )
        async for item in stream:
            self.key_accepted = True
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

    async def _send_loop(self) -> None:
        last_checkpoint = time.monotonic()
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()
            if not self._reading:
                return
            if time.monotonic() - last_checkpoint >= settings.STREAM_CHECKPOINT_INTERVAL:
                await self._checkpoint()
                last_checkpoint = time.monotonic()
            # Whatever arrives while we sleep leaves as one frame.
            await asyncio.sleep(settings.STREAM_FLUSH_INTERVAL)

    async def _flush(self) -> None:
        if not (self._pending_answer or self._pending_thinking):
            return
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
        await self.layer.group_send(self.group, event)

    def _texts(self) -> tuple[str, str]:
        return (
            "".join(self.answer) + "".join(self._pending_answer),
            "".join(self.thinking) + "".join(self._pending_thinking),
        )

    @database_sync_to_async
    def _checkpoint(self) -> None:
        answer, thinking = self._texts()
        Message.objects.filter(pk=self.message_id).update(content=answer, thinking=thinking)

    @database_sync_to_async
    def _save_end(self, status: str, error: str, error_kind: str) -> None:
        answer, thinking = self._texts()
        if self._thinking_started is not None and self.thinking_seconds is None:
            # Thought until the end: it never got to an answer.
            self.thinking_seconds = round(time.monotonic() - self._thinking_started, 1)
        final = self.final
        with transaction.atomic():
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
        elif self.key_accepted:
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


def running(message_id: int) -> Generation | None:
    return _running.get(message_id)


def stop(message_id: int) -> bool:
    generation = _running.get(message_id)
    if generation is None:
        return False
    generation.stop()
    return True


@database_sync_to_async
def _store_turn(user, conversation: Conversation | None, model: GatewayModel, text: str):
    """Save the user's message and the empty answer before the gateway is called."""
    now = timezone.now()
    with transaction.atomic():
        if conversation is None:
            conversation = Conversation.objects.create(
                user=user, title=Conversation.title_from(text), model=model, created_at=now, updated_at=now
            )
            history = []
        else:
            history = conversation.history()
            conversation.model = model
            conversation.updated_at = now
            conversation.save(update_fields=["model", "updated_at"])
        question = conversation.messages.create(role=Message.Role.USER, content=text, created_at=now)
        answer = conversation.messages.create(
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
            service_name=model.service_name,
            model_name=model.model_name,
            created_at=now,
        )
    return conversation, question, answer, history


async def start(
    *,
    user,
    conversation: Conversation | None,
    model: GatewayModel,
    text: str,
    api_key_id: int | None,
    channel_name: str,
):
    """Store the turn, tell the group about it, and relay the answer in its own task.

    `conversation` is None for a new chat; `channel_name` (the calling socket) joins the
    conversation's group first, so it sees the turn and every delta in order.
    `api_key_id` is the user's key to send, or None for the site's shared key.
    Returns the conversation.
    """
    new = conversation is None
    conversation, question, answer, history = await _store_turn(user, conversation, model, text)
    body = gateway.build_body(
        service_name=model.service_name,
        model_name=model.model_name,
        prompt=text,
        history=[gateway.history_turn(m.role, m.content) for m in history],
        parameters={"enable_thinking": True} if model.thinking else None,
    )
    generation = Generation(answer, conversation.group_name, body, user.pk, api_key_id)
    _running[answer.pk] = generation
    layer = get_channel_layer()
    await layer.group_add(conversation.group_name, channel_name)
    # Sent before the task exists, so no delta can overtake it.
    await layer.group_send(
        conversation.group_name,
        {"type": "chat.turn", "conversation": conversation.pk, "question": question.pk,
         "answer": answer.pk, "new": new},
    )
    generation.task = asyncio.create_task(generation.run())
    return conversation
