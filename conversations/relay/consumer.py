"""The chat socket: checks who is asking and what for, then delegates.

One socket per page. It watches the conversation the page shows (its Channels group)
and the user's own group (the sidebar). Actions from the page ("send", "stop", "retry",
"regenerate", "edit", "select", "sidebar") are checked here (the user, what they own,
what they typed, admission.py) and handed on: turns.py stores, generation.py relays.
Events from the groups (events.py) become htmx out-of-band fragments (fragments.py);
which deltas to show is DeltaFilter's business (catchup.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from importlib import import_module
from typing import cast

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest

from conversations.forms import SettingsForm
from conversations.models import Conversation, GatewayModel, Message
from conversations.relay import admission, events, fragments, frames, generation, turns
from conversations.relay.catchup import DeltaFilter, Gap

# The close code for a socket whose session ended: neither htmx nor chatsite.js reconnects
# on it (a new handshake would be refused), and the page says why.
SIGNED_OUT = 4001


class ChatConsumer(AsyncWebsocketConsumer):
    @property
    def layer(self) -> events.Layer:
        return cast(events.Layer, self.channel_layer)

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()  # before accept: the handshake is refused
            return
        self.user = cast(User, user)  # the session's user, behind a lazy object
        self.session_key: str = self.scope["session"].session_key or ""  # signed in: it has one
        self.deltas = DeltaFilter()
        self.watching: set[str] = set()  # groups this socket joined
        self.deadline: asyncio.Task | None = None
        conversation = None
        conversation_id = self.scope["url_route"]["kwargs"].get("conversation_id")
        if conversation_id is not None:
            conversation = await self.owned(conversation_id)
            if conversation is None:
                await self.close()
                return
            await self.watch(events.conversation_group(conversation.pk))
        await self.watch(events.user_group(self.user.pk))
        await self.accept()
        if conversation is not None:
            await self.resync(conversation)

    async def disconnect(self, code):
        if deadline := getattr(self, "deadline", None):
            deadline.cancel()
        # Leave the groups at once, so no delta queues up for a socket that is gone.
        for group in getattr(self, "watching", ()):
            await self.layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        # Signed in at the handshake is not enough: the session may have ended since
        # in a way no event reported (signals.py sends what it can).
        if not await self.still_signed_in():
            await self.sign_out()
            return
        if text_data is None or len(text_data) > settings.MAX_FRAME_CHARS:
            await self.send_error("That request is too large to send. Shorten the message and try again.")
            return
        try:
            data = frames.parse(text_data)
        except frames.FrameError as error:
            await self.send_error(str(error))
            return
        name = data.get("action", "send")
        action = ACTIONS.get(name) if isinstance(name, str) else None
        if action is None:
            await self.send_error("Unknown action.")
            return
        await action(self, data)

    # --- actions from the page ------------------------------------------------------

    async def send_message(self, data: dict):
        text = await self.valid_text(data.get("message"))
        if text is None:
            return
        model = await self.valid_model(data.get("model"))
        if model is None:
            return
        conversation, settings_data = None, None
        if data.get("conversation"):
            conversation = await self.owned(data["conversation"])
            if conversation is None:
                await self.send_error("That conversation was not found.")
                return
        elif data.get("settings_included"):
            # A new chat's Settings panel, sent with its first message.
            form = SettingsForm(data)
            if not await database_sync_to_async(form.is_valid)():
                await self.send_error(f"Check the settings: {form.error_text()}")
                return
            settings_data = form.cleaned_data
        if turn := await self.admit(
            conversation, model, lambda: turns.ask(self.user, conversation, model, text, settings_data)
        ):
            await self.send(fragments.accepted(turn.conversation, new=turn.new_conversation))

    async def retry(self, data: dict):
        await self.regenerate(data, retry=True)

    async def regenerate(self, data: dict, *, retry: bool = False):
        """A new version of the last answer shown. Retry is this, after a failure, with the
        answer's own model; Regenerate takes the model picked now."""
        answer = await self.owned_message(data.get("message"), Message.Role.ASSISTANT)
        if answer is None:
            await self.send_error("That answer was not found.")
            return
        conversation = answer.conversation
        # Busy first: while an answer streams, it is the last one, not this.
        busy, last = await database_sync_to_async(lambda: (admission.busy(conversation), conversation.last_answer()))()
        if busy:
            await self.send_error(admission.BUSY)
            return
        if retry and (not answer.retryable or last is None or answer.pk != last.pk):
            await self.send_error("Only the last answer can be retried, after it failed or was cut short.")
            return
        if not retry and (last is None or answer.pk != last.pk):
            await self.send_error("Only the last answer can be regenerated.")
            return
        if answer.parent_id is None:
            await self.send_error("That answer follows no question, so it can't be asked again.")
            return
        if data.get("model"):
            model = await self.valid_model(data["model"])
        elif not (model := await self.answer_model(answer)):
            await self.send_error("That model is not available. Pick one from the list and try again.")
        if model:
            await self.admit(conversation, model, lambda: turns.regenerate(answer, model))

    async def edit(self, data: dict):
        """A new version of one of the user's questions, and a fresh answer to it."""
        question = await self.owned_message(data.get("message"), Message.Role.USER)
        if question is None:
            await self.send_error("That question was not found.")
            return
        text = await self.valid_text(data.get("text"))
        if text is None:
            return
        model = await self.valid_model(data.get("model"))
        if model:
            await self.admit(question.conversation, model, lambda: turns.edit(question, text, model))

    async def select(self, data: dict):
        """Show another version of a message (the "‹ 2/3 ›" buttons), in every tab."""
        message = await self.owned_message(data.get("message"))
        if message is None:
            await self.send_error("That version was not found.")
            return
        conversation = message.conversation

        @database_sync_to_async
        def show() -> bool:
            if admission.busy(conversation):
                return False
            with transaction.atomic():
                conversation.tree().show(message)
            return True

        if not await show():
            await self.send_error(admission.BUSY)
            return
        # Every tab showing the conversation (this one included) redraws its messages.
        await self.layer.group_send(events.conversation_group(conversation.pk), events.thread(conversation.pk))

    async def stop(self, data: dict):
        conversation = await self.owned(data.get("conversation"))
        if conversation is None:
            await self.send_error("That conversation was not found.")
            return
        answer = await database_sync_to_async(conversation.generating_message)()
        if answer is None:
            await self.send_error("Nothing is being generated here.")
            return
        await generation.stop(answer.pk)  # wherever it runs; its end reaches every tab

    async def refresh_sidebar(self, data: dict):
        """The page's sidebar marks these conversations as generating: say how they are now.

        A page (re)connects after rendering; an answer that ended in between would keep its
        marker, as the sidebar update was sent before this socket was listening.
        """
        ids = data.get("conversations")
        if not isinstance(ids, list):
            return
        ids = [i for i in map(frames.object_id, ids[:200]) if i is not None]
        html = await database_sync_to_async(fragments.sidebar_items_for)(self.user, ids)
        if html:
            await self.send(html)

    # --- checks and hand-offs -------------------------------------------------------

    async def valid_text(self, text) -> str | None:
        """The message's text, stripped, or None after saying what is wrong with it."""
        if not isinstance(text, str) or not text.strip():
            await self.send_error("Type a message first.")
            return None
        text = text.strip()
        if len(text) > settings.MAX_MESSAGE_CHARS:
            await self.send_error(
                f"Your message is {len(text):,} characters long; the limit is "
                f"{settings.MAX_MESSAGE_CHARS:,}. Shorten it and send again."
            )
            return None
        return text

    async def valid_model(self, model_id) -> GatewayModel | None:
        model = await self.chat_model(model_id)
        if model is None:
            await self.send_error("That model is not available. Pick one from the list.")
        return model

    async def admit(
        self, conversation: Conversation | None, model: GatewayModel, store: Callable[[], turns.NewTurn]
    ) -> turns.NewTurn | None:
        """If the user may generate now, store the turn (`store`) and relay its answer;
        else say why not. Returns the stored turn, or None."""
        admitted = await database_sync_to_async(admission.admit)(self.user, conversation, model, store)
        if admitted.needs_key:
            await self.send(fragments.no_api_key())
        elif admitted.refusal:
            await self.send_error(admitted.refusal)
        if (turn := admitted.turn) is None:
            return None
        await generation.launch(
            turn, user_id=self.user.pk, api_key_id=admitted.api_key_id, channel_name=self.channel_name
        )
        self.watching.add(events.conversation_group(turn.conversation.pk))  # launch() put this socket in it
        return turn

    async def resync(self, conversation: Conversation):
        """Bring a page that (re)connects up to date: the answer so far, then only later deltas."""

        @database_sync_to_async
        def current_answer() -> Message | None:
            generation.sweep_orphans(self.user.pk)
            return conversation.generating_message() or conversation.last_answer()

        answer = await current_answer()
        if answer is None:
            return
        if answer.is_streaming:
            await self.catch_up(answer.pk)
        else:
            # Finished while this page was away (or just now): show its final state.
            await self.send(await database_sync_to_async(fragments.done_for)(answer.pk))

    async def catch_up(self, answer_id: int):
        """Ask the generation (in whichever process runs it) for its text so far; deltas
        that arrive meanwhile are held, and those the reply covers dropped."""
        self.deltas.await_catch_up(answer_id)
        await generation.request_snapshot(answer_id, self.channel_name)
        if self.deadline:
            self.deadline.cancel()
        self.deadline = asyncio.create_task(self.catch_up_deadline(answer_id))

    async def catch_up_deadline(self, answer_id: int):
        await asyncio.sleep(settings.STREAM_CATCH_UP_TIMEOUT)
        # Through the channel, so it is handled in turn with the other events.
        await self.layer.send(self.channel_name, events.catch_up_timeout(answer_id))

    # --- events from the groups (events.py) -------------------------------------------

    async def dispatch(self, message):
        # Channels closes stale database connections (a hop to a thread) before every
        # handler; a delta touches no database and comes 20 times a second per stream,
        # so it skips that (the hop was ~15% of the relay's CPU in the benchmark).
        if message["type"] == "chat.delta":
            await self.chat_delta(message)
        else:
            await super().dispatch(message)

    async def chat_turn(self, event: events.Turn):
        self.deltas.started(event["answer"])
        await self.send(event["html"])

    async def chat_thread(self, event: events.Thread):
        """Another version was picked (in this tab or another): redraw the messages shown."""
        await self.send(await database_sync_to_async(fragments.thread_for)(event["conversation"]))

    async def chat_status(self, event: events.Status):
        await self.send(fragments.status(event["message"], event["text"]))

    async def chat_delta(self, event: events.Delta):
        shown = self.deltas.delta(event)
        if isinstance(shown, Gap):  # one was lost on the way: heal now, not at the end
            await self.catch_up(shown.answer_id)
        elif shown is not None:
            await self.send(fragments.delta(shown))

    async def chat_catch_up(self, event: events.CatchUp):
        later = self.deltas.caught_up(event)
        if later is None:
            return  # not asked for, or already given up on
        for frame in fragments.catch_up(event):
            await self.send(frame)
        for delta in later:
            await self.send(fragments.delta(delta))
        if self.deltas.awaiting(event["message"]):  # another was lost after it
            await self.catch_up(event["message"])

    async def chat_catch_up_timeout(self, event: events.CatchUpTimeout):
        """No generation answered: it has just ended, or its process died. Show what is stored."""
        if self.deltas.give_up(event["message"]):
            await database_sync_to_async(generation.sweep_orphans)(self.user.pk)
            await self.send(await database_sync_to_async(fragments.done_for)(event["message"]))

    async def chat_done(self, event: events.Done):
        self.deltas.forget(event["message"])
        # Rendered once by the generation; if that failed, here (off the event loop).
        html = event["html"] or await database_sync_to_async(fragments.done_for)(event["message"])
        await self.send(html)

    async def sidebar_remove(self, event: events.SidebarRemove):
        """A conversation was deleted (maybe in another tab): out of the sidebar."""
        await self.send(fragments.sidebar_remove(event["conversation"]))

    async def sidebar_update(self, event: events.SidebarUpdate):
        # The socket that started a new conversation already added it to its sidebar.
        prepend = event.get("new", False) and event.get("origin") != self.channel_name
        if "item" in event:
            await self.send(fragments.sidebar_placed(event["item"], prepend))
        else:
            await self.send(await database_sync_to_async(fragments.sidebar_item_for)(event["conversation"], prepend))

    async def access_revoked(self, event: events.AccessRevoked):
        """The user logged out (this session's sockets close) or lost her account (all do)."""
        if event["session"] in (None, events.session_tag(self.session_key)):
            await self.sign_out()

    async def sign_out(self):
        await self.send_error("You have been signed out. Reload the page to sign in again.")
        await self.close(code=SIGNED_OUT)

    # --- the user's own objects -------------------------------------------------------

    async def watch(self, group: str):
        await self.layer.group_add(group, self.channel_name)
        self.watching.add(group)

    async def send_error(self, text: str):
        await self.send(fragments.error(text))

    @database_sync_to_async
    def still_signed_in(self) -> bool:
        """Django's own check, on the session as it is now in the database: not logged out,
        expired or flushed, its user still active and her password unchanged. Two small
        queries per action (the handshake's session object is a copy loaded once)."""
        request = HttpRequest()
        request.session = import_module(settings.SESSION_ENGINE).SessionStore(self.session_key)
        return auth.get_user(request).pk == self.user.pk

    @database_sync_to_async
    def owned(self, conversation_id) -> Conversation | None:
        """The user's conversation with this id, or None: another user's is 'not found'."""
        pk = frames.object_id(conversation_id)
        return None if pk is None else Conversation.objects.filter(pk=pk, user_id=self.user.pk).first()

    @database_sync_to_async
    def owned_message(self, message_id, role: str | None = None) -> Message | None:
        """The user's message with this id (of this role), or None: another user's is "not found"."""
        if (pk := frames.object_id(message_id)) is None:
            return None
        messages = Message.objects.select_related("conversation").filter(conversation__user_id=self.user.pk)
        if role is not None:
            messages = messages.filter(role=role)
        return messages.filter(pk=pk).first()

    @database_sync_to_async
    def chat_model(self, model_id) -> GatewayModel | None:
        pk = frames.object_id(model_id)
        return None if pk is None else GatewayModel.for_chat().filter(pk=pk).first()

    @database_sync_to_async
    def answer_model(self, answer: Message) -> GatewayModel | None:
        return GatewayModel.for_chat().filter(service_name=answer.service_name, model_name=answer.model_name).first()


# What the page can ask for ({"action": ...}; a message without one is "send").
ACTIONS: dict[str, Callable[[ChatConsumer, dict], Awaitable[None]]] = {
    "send": ChatConsumer.send_message,
    "stop": ChatConsumer.stop,
    "retry": ChatConsumer.retry,
    "regenerate": ChatConsumer.regenerate,
    "edit": ChatConsumer.edit,
    "select": ChatConsumer.select,
    "sidebar": ChatConsumer.refresh_sidebar,
}
