"""The relay: one task per answer, from the gateway's stream to every socket showing it.

`launch()` takes a stored turn (see turns.py) and starts a `Generation`, which owns the
answer until it ends. Its task

1. reads the stream through the gateway adapter (retrying with backoff while nothing
   has arrived, never after) and keeps answer and thinking in memory (`Texts`);
2. coalesces the text that arrives into numbered deltas and sends each to the
   conversation's Channels group (the first chunk after a quiet spell goes at once, later
   ones wait at most STREAM_FLUSH_INTERVAL), where every socket showing the conversation
   turns it into an htmx swap (consumer.py, fragments.py);
3. checkpoints the text to the database about once a second, never once per chunk, and
   touches the answer every few seconds of silence so other processes can tell it lives;
4. ends with the text and status, and the ledger's writes (costs/ledger.py `settle`),
   in one transaction, then tells the group the answer is done.

Image models (streaming off) go through the same task: the gateway's whole answer
arrives at once from POST /generate (the page shows a progress indicator meanwhile),
its images are checked by their bytes, and Stop, retries, faults and the ledger work as
for a stream. Stop and catch-up requests reach a generation through its control group
(events.py), from a socket in any process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import NamedTuple

import httpx
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations import gateway, images
from conversations.costs import ledger
from conversations.costs.money import jsonable
from conversations.gateway import ErrorKind
from conversations.keys import vault
from conversations.models import ApiKey, Message
from conversations.relay import events, fragments, pacing
from conversations.relay.live import LiveMarkdown
from conversations.relay.turns import NewTurn

log = logging.getLogger(__name__)

# Running generations by answer id. It also keeps each task referenced: asyncio holds
# only a weak reference to a task, which could otherwise be collected mid-stream.
_running: dict[int, Generation] = {}

# Failures worth retrying automatically, as long as nothing has arrived yet.
RETRYABLE = {ErrorKind.CONNECT, ErrorKind.TIMEOUT, ErrorKind.SERVER}
# Failures after part of an answer arrived: it is kept, marked interrupted.
CUT_SHORT = {ErrorKind.CUT, ErrorKind.INCOMPLETE, ErrorKind.TIMEOUT, ErrorKind.STREAM_ERROR}


class Snapshot(NamedTuple):
    """What the deltas so far add up to: a socket that joins mid-answer shows this first."""

    seq: int  # the number of the last delta in it
    answer: str
    thinking: str


class Texts:
    """One answer's text and thinking: what left as numbered deltas, and what waits.

    A delta carries at most `max_delta` characters (a socket message has a size limit);
    the rest waits for the next one.
    """

    def __init__(self, max_delta: int = 1 << 62) -> None:
        self.max_delta = max_delta
        self.seq = 0  # number of the last delta taken
        self._answer: list[str] = []
        self._thinking: list[str] = []
        self._pending_answer: list[str] = []
        self._pending_thinking: list[str] = []

    def add(self, name: str, text: str) -> None:
        (self._pending_thinking if name == "thinking" else self._pending_answer).append(text)

    @property
    def pending(self) -> bool:
        return bool(self._pending_answer or self._pending_thinking)

    def take(self, *, force: bool = False) -> tuple[int, str, str] | None:
        """Everything that arrived since the last call, as one delta (seq, answer, thinking);
        None if nothing did, unless `force` (a delta that only formats what was sent)."""
        if not self.pending and not force:
            return None
        answer, thinking = "".join(self._pending_answer), "".join(self._pending_thinking)
        self._pending_answer.clear()
        self._pending_thinking.clear()
        if len(answer) + len(thinking) > self.max_delta:
            answer, thinking = self._keep_rest(answer, thinking)
        if answer:
            self._answer.append(answer)
        if thinking:
            self._thinking.append(thinking)
        self.seq += 1
        return self.seq, answer, thinking

    def _keep_rest(self, answer: str, thinking: str) -> tuple[str, str]:
        """The first max_delta characters (thinking first, as it came first); the rest waits."""
        thinking, rest_thinking = thinking[: self.max_delta], thinking[self.max_delta :]
        room = self.max_delta - len(thinking)
        answer, rest_answer = answer[:room], answer[room:]
        if rest_thinking:
            self._pending_thinking.append(rest_thinking)
        if rest_answer:
            self._pending_answer.append(rest_answer)
        return answer, thinking

    def sent(self) -> Snapshot:
        return Snapshot(self.seq, "".join(self._answer), "".join(self._thinking))

    def whole(self) -> tuple[str, str]:
        """Answer and thinking, pending text included: what the database gets."""
        return "".join(self._answer + self._pending_answer), "".join(self._thinking + self._pending_thinking)

    @property
    def has_answer(self) -> bool:
        return bool(self._answer or self._pending_answer)

    @property
    def has_any(self) -> bool:
        return self.has_answer or bool(self._thinking or self._pending_thinking)


class Outcome(NamedTuple):
    status: str
    error: str  # for the user
    error_kind: str


def outcome(
    *,
    final: gateway.Final | None,
    stopped: bool,
    error: BaseException | None,
    streaming: bool,
    texts: Texts,
    got_images: bool,
    image_errors: list[str],
) -> Outcome:
    """How an answer ended, from what its reader got: the final chunk, a Stop, or an error."""
    if final is not None:
        got_something = got_images or texts.has_answer
        if image_errors:
            # Paid for, so the ledger row stays; what was refused is said.
            status = Message.Status.COMPLETE if got_something else Message.Status.FAILED
            return Outcome(status, " ".join(image_errors), ErrorKind.IMAGE)
        if not streaming and not got_something:
            return Outcome(Message.Status.FAILED, "The gateway's answer had no text and no image.", ErrorKind.EMPTY)
        return Outcome(Message.Status.COMPLETE, "", "")
    if stopped:
        return Outcome(Message.Status.STOPPED, "", "")
    if error is None:  # the adapter raises when no final chunk came; be safe anyway
        error = gateway.GatewayError(ErrorKind.INCOMPLETE, "The gateway's answer ended before it was complete.")
    if isinstance(error, (ApiKey.DoesNotExist, vault.UndecryptableKey)):
        return Outcome(
            Message.Status.FAILED,
            "Your API key could not be read. Add it again on the API keys page.",
            ErrorKind.KEY_REFUSED,
        )
    if not isinstance(error, gateway.GatewayError):
        return Outcome(Message.Status.FAILED, "Something went wrong while reading the gateway's answer.", "")
    if texts.has_any and error.kind in CUT_SHORT:
        # Part of an answer: kept, marked interrupted, a fresh one offered.
        return Outcome(Message.Status.INTERRUPTED, error.message, error.kind)
    return Outcome(Message.Status.FAILED, error.message, error.kind)


class Generation:
    def __init__(self, answer: Message, body: dict, user_id: int, api_key_id: int | None, streaming: bool = True):
        self.answer = answer  # the row as stored when the turn began
        self.message_id = answer.pk
        self.group = events.conversation_group(answer.conversation_id)
        self.body = body
        self.user_id = user_id
        self.api_key_id = api_key_id  # the user's ApiKey, or None for the site's shared key
        self.streaming = streaming  # False: an image model, answering through /generate
        self.layer = events.layer()

        self.texts = Texts(max_delta=fragments.text_per_frame())
        # Formatted as it streams, once for every socket (None: plain text until the end).
        self.live: tuple[LiveMarkdown, LiveMarkdown] | None = None
        if settings.LIVE_RENDERING:
            self.live = (LiveMarkdown(settings.LIVE_RENDER_INTERVAL), LiveMarkdown(settings.LIVE_RENDER_INTERVAL))
        self.received = False  # anything arrived: from now on, never retry silently
        self.final: gateway.Final | None = None
        self.extras: list[dict] = []
        self.skipped = 0
        self.images: list[images.CheckedImage] = []  # checked, stored when the answer ends
        self.image_errors: list[str] = []

        self.started = time.monotonic()
        self.first_chunk_after: float | None = None  # seconds from the start
        self._thinking_started: float | None = None
        self.thinking_seconds: float | None = None
        self._thinking_seconds_sent = False
        self._status_shown = False
        self._wake = asyncio.Event()
        self._reading = True
        self._stop_requested = False
        self._reader: asyncio.Task | None = None
        self.task: asyncio.Task | None = None
        self.channel = ""  # this generation's own channel, for stop and snapshot requests

    # --- what other sockets ask, through the control group --------------------------

    def snapshot(self) -> Snapshot:
        return self.texts.sent()

    def stop(self) -> None:
        """Cancel the gateway request (once: a double cancel can leak a connection)."""
        if self._reader and not self._stop_requested:
            self._stop_requested = True
            self._reader.cancel()

    async def listen_for_control(self) -> None:
        """Join the control group before the turn is announced, so no request is missed."""
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(events.control_group(self.message_id), self.channel)

    async def _listen(self) -> None:
        while True:
            event = await self.layer.receive(self.channel)
            if event["type"] == "generation.stop":
                self.stop()
            elif event["type"] == "generation.snapshot":
                await self.layer.send(event["reply_to"], self._catch_up())

    def _catch_up(self) -> events.CatchUp:
        event = events.catch_up(self.message_id, *self.snapshot())
        if self.live is not None:
            for name, live in zip(("answer_html", "thinking_html"), self.live, strict=True):
                closed, open_html, raw = live.snapshot()
                event[name] = events.FormattedSoFar(closed=closed, open=open_html, raw=raw)  # type: ignore[literal-required]
        return event

    # --- the task ------------------------------------------------------------------

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen())
        try:
            self._reader = asyncio.create_task(self._read())
            sender = asyncio.create_task(self._send_loop())
            await asyncio.wait([self._reader])
            stopped = self._reader.cancelled()
            error = None if stopped else self._reader.exception()
            if error is not None and not isinstance(error, gateway.GatewayError):
                log.error("Generation %s: %s", self.message_id, error, exc_info=error)
            end = outcome(
                final=self.final,
                stopped=stopped,
                error=error,
                streaming=self.streaming,
                texts=self.texts,
                got_images=bool(self.images),
                image_errors=self.image_errors,
            )
            self._reading = False
            self._wake.set()
            await sender
            await self._save_end(end)
        except Exception:
            log.exception("Generation %s failed unexpectedly", self.message_id)
            end = Outcome(Message.Status.FAILED, "Something went wrong while relaying the answer.", "")
            await self._save_end(end)
        finally:
            listener.cancel()
            await self.layer.group_discard(events.control_group(self.message_id), self.channel)
            _running.pop(self.message_id, None)
            # Rendered once here, for every socket showing it (not once per socket).
            done, item = await database_sync_to_async(self._final_fragments)()
            await self.layer.group_send(self.group, events.done(self.message_id, done))
            await self.layer.group_send(
                events.user_group(self.user_id), events.sidebar_update(self.answer.conversation_id, item=item)
            )
        self._log_end(end)

    async def _read(self) -> None:
        client = gateway.get_client(gateway.default_timeout(read=settings.UPSTREAM_READ_TIMEOUT))
        # Decrypted here, at the last moment, and held only by the request.
        api_key = await database_sync_to_async(ApiKey.secret_for)(self.user_id, self.api_key_id)
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
                log.warning(
                    "Generation %s: %s; retrying in %g s (attempt %d of %d)",
                    self.message_id, exc.kind, delay, attempt + 1, attempts,
                )  # fmt: skip
                await self._show_status(
                    f"{exc.message} Trying again in {delay:g} s (attempt {attempt + 1} of {attempts})."
                )
                await asyncio.sleep(delay)

    def _arrived(self) -> None:
        if not self.received:
            self.received = True
            self.first_chunk_after = time.monotonic() - self.started

    async def _read_stream(self, client: httpx.AsyncClient, api_key: str) -> None:
        stream = gateway.stream_generate(
            base_url=settings.UPSTREAM_BASE_URL, api_key=api_key, body=self.body, client=client
        )
        async for item in stream:
            self._arrived()
            if isinstance(item, gateway.Delta):
                if item.name == "thinking":
                    if self._thinking_started is None:
                        self._thinking_started = time.monotonic()
                elif self._thinking_started is not None and self.thinking_seconds is None:
                    self.thinking_seconds = round(time.monotonic() - self._thinking_started, 1)
                self.texts.add(item.name, item.text)
                self._wake.set()
            elif isinstance(item, gateway.Final):
                self.final = item
            elif isinstance(item, gateway.Extra):
                self.extras.append(item.chunk)
            elif isinstance(item, gateway.Skipped):
                self.skipped += 1

    async def _read_once(self, client: httpx.AsyncClient, api_key: str) -> None:
        """An image model's whole answer, from POST /generate."""
        result = await gateway.generate(
            base_url=settings.UPSTREAM_BASE_URL,
            api_key=api_key,
            body=self.body,
            client=client,
            # base64 takes 4/3 of the bytes; room for several images and some text.
            max_bytes=settings.MAX_IMAGE_BYTES * 6 + 1_048_576,
        )
        self._arrived()
        self.final = result.final  # paid for: the ledger row is written whatever follows
        self.extras.extend(result.extras)
        if result.thinking:
            self.texts.add("thinking", result.thinking)
        if result.text:
            self.texts.add("output", result.text)
        self._wake.set()
        await images.receive_all(result.images, self.images, self.image_errors)

    async def _show_status(self, text: str) -> None:
        self._status_shown = True
        await self.layer.group_send(self.group, events.status(self.message_id, text))

    async def _send_loop(self) -> None:
        last_checkpoint = time.monotonic()
        dirty = False
        while True:
            try:
                # Wake for new text, or after a spell of silence to say we are alive.
                # Text shown raw after a burst is formatted after a short quiet spell.
                waiting = self.live is not None and any(live.waiting for live in self.live)
                quiet = settings.LIVE_RENDER_INTERVAL if waiting else settings.STREAM_HEARTBEAT_INTERVAL
                async with asyncio.timeout(quiet):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            dirty = await self._flush() or dirty
            if not self._reading:
                # The reader may have ended while that flush was being sent: what it
                # added meanwhile goes too (else only "done" would show it).
                while await self._flush():
                    pass
                return
            since = time.monotonic() - last_checkpoint
            if (dirty and since >= settings.STREAM_CHECKPOINT_INTERVAL) or since >= settings.STREAM_HEARTBEAT_INTERVAL:
                await self._checkpoint()
                last_checkpoint, dirty = time.monotonic(), False
            # Whatever arrives while we sleep leaves as one frame (longer while the process is behind).
            await asyncio.sleep(pacing.flush_interval())

    async def _flush(self) -> bool:
        now = time.monotonic()
        # Nothing new, but text shown raw can be formatted now: a delta for that alone.
        format_only = self.live is not None and any(live.waiting and live.due(now) for live in self.live)
        taken = self.texts.take(force=format_only)
        if taken is None:
            return False
        event = events.delta(self.message_id, *taken)
        if self.live is not None:
            answer, thinking = self.live[0].feed(event["answer"], now), self.live[1].feed(event["thinking"], now)
            event["answer_html"] = {"closed": answer.closed, "open": answer.open, "raw": answer.raw}
            event["thinking_html"] = {"closed": thinking.closed, "open": thinking.open, "raw": thinking.raw}
        if self.thinking_seconds is not None and not self._thinking_seconds_sent:
            event["thinking_seconds"] = self.thinking_seconds
            self._thinking_seconds_sent = True
        if self._status_shown:  # a retry notice, now out of date
            event["clear_status"] = True
            self._status_shown = False
        await self.layer.group_send(self.group, event)
        if self.texts.pending:  # more than one delta could carry: the rest goes next
            self._wake.set()
        return True

    @database_sync_to_async
    def _checkpoint(self) -> None:
        answer, thinking = self.texts.whole()
        Message.objects.filter(pk=self.message_id).update(content=answer, thinking=thinking, updated_at=timezone.now())

    @database_sync_to_async
    def _save_end(self, end: Outcome) -> None:
        answer, thinking = self.texts.whole()
        if self._thinking_started is not None and self.thinking_seconds is None:
            # Thought until the end: it never got to an answer.
            self.thinking_seconds = round(time.monotonic() - self._thinking_started, 1)
        # Files first (a failed transaction leaves a file behind, never a row without one).
        stored = [(image, images.store(image, self.user_id)) for image in self.images]
        with transaction.atomic():
            Message.objects.filter(pk=self.message_id).update(
                content=answer,
                thinking=thinking,
                status=end.status,
                error=end.error,
                error_kind=end.error_kind,
                thinking_seconds=self.thinking_seconds,
                warnings=self.final.warnings if self.final else [],
                extras=jsonable(self.extras),
                skipped_lines=self.skipped,
                updated_at=timezone.now(),
            )
            ledger.settle(
                self.answer,
                final=self.final,
                images=stored,
                api_key_id=self.api_key_id,
                key_refused=end.error_kind == ErrorKind.KEY_REFUSED,
                gateway_answered=self.received,
            )

    def _final_fragments(self) -> tuple[str, str]:
        """The answer as stored now, and its conversation's sidebar item ("", "" if they
        cannot be rendered: each socket then renders them itself, so "done" still goes)."""
        try:
            return fragments.done_for(self.message_id), fragments.sidebar_item_for(self.answer.conversation_id, False)
        except Exception:
            log.exception("Generation %s: rendering its final state failed", self.message_id)
            return "", ""

    def _log_end(self, end: Outcome) -> None:
        """One line per answer, for operators: what, how it ended, what it cost, how fast."""
        final = self.final
        first = f"{self.first_chunk_after * 1000:.0f} ms" if self.first_chunk_after is not None else "-"
        log.info(
            "answer=%s model=%s/%s status=%s error_kind=%s tokens=%s cost=%s duration=%.2fs first_chunk=%s",
            self.message_id, self.answer.service_name, self.answer.model_name, end.status, end.error_kind or "-",
            final.total_tokens if final else "-",
            format(final.cost_total, "f") if final and final.cost_total is not None else "-",
            time.monotonic() - self.started, first,
        )  # fmt: skip


# --- what the consumer and the views call ------------------------------------------


async def launch(turn: NewTurn, *, user_id: int, api_key_id: int | None, channel_name: str) -> Generation:
    """Tell the conversation's group about the stored turn, then relay its answer in a task.

    `channel_name` (the calling socket) joins the group first, so it sees the turn and
    every delta in order. `api_key_id` is the user's key to send, or None for the site's.
    """
    answer, conversation = turn.answer, turn.conversation
    generation = Generation(answer, turn.request_body(), user_id, api_key_id, streaming=turn.model.streaming)
    _running[answer.pk] = generation
    await generation.listen_for_control()
    layer = events.layer()
    group = events.conversation_group(conversation.pk)
    await layer.group_add(group, channel_name)
    # Rendered once, for every socket; sent before the task exists, so no delta can overtake it.
    html = await database_sync_to_async(fragments.turn_html)(turn)
    await layer.group_send(group, events.turn(conversation=conversation.pk, answer=answer.pk, html=html))
    item = fragments.sidebar_item(conversation, generating=True)
    await layer.group_send(
        events.user_group(user_id),
        events.sidebar_update(conversation.pk, item=item, new=turn.new_conversation, origin=channel_name),
    )
    generation.task = asyncio.create_task(generation.run())
    pacing.loop_lag().ensure_running(busy=lambda: bool(_running))
    return generation


def running(answer_id: int) -> Generation | None:
    """The generation if this process runs it (tests and the benchmark look inside)."""
    return _running.get(answer_id)


async def stop(answer_id: int) -> None:
    """Ask the generation to stop, wherever it runs."""
    await events.layer().group_send(events.control_group(answer_id), events.stop())


async def request_snapshot(answer_id: int, reply_to: str) -> None:
    """Ask the generation for its text so far; it answers `reply_to` with chat.catch_up."""
    await events.layer().group_send(events.control_group(answer_id), events.snapshot_request(reply_to))


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
        status=Message.Status.INTERRUPTED, error=RESTART_ERROR, error_kind=ErrorKind.RESTART, updated_at=timezone.now()
    )
