"""The chat socket: checks who is asking and what for, then delegates.

One socket per page. It watches the conversation the page shows (its Channels group)
and the user's own group (the sidebar), hands "send", "stop", "retry", "regenerate" and
"edit" to the generation module, switches the version shown ("select"), and turns the
groups' events into htmx out-of-band fragments (see fragments.py).
"""

from __future__ import annotations

import asyncio
import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import transaction

from conversations.costs import budgets
from conversations.forms import SettingsForm
from conversations.models import (
    ApiKey,
    Conversation,
    GatewayModel,
    Message,
    SiteSettings,
)
from conversations.relay import admission as limits
from conversations.relay import fragments, generation

BUSY = "An answer is still being generated here. Stop it or wait for it."


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.user = self.scope["user"]
        if not self.user.is_authenticated:
            await self.close()  # before accept: the handshake is refused
            return
        self.shown_seq: dict[int, int] = {}  # answer id -> last delta shown
        self.awaiting: dict[int, list[dict]] = {}  # answer id -> deltas held until its catch-up
        self.watching: set[str] = set()  # groups this socket joined
        conversation = None
        conversation_id = self.scope["url_route"]["kwargs"].get("conversation_id")
        if conversation_id is not None:
            conversation = await self.owned(conversation_id)
            if conversation is None:
                await self.close()
                return
            await self.watch(conversation.group_name)
        await self.watch(Conversation.user_group_name(self.user.pk))
        await self.accept()
        if conversation is not None:
            await self.resync(conversation)

    async def disconnect(self, code):
        if deadline := getattr(self, "deadline", None):
            deadline.cancel()
        # Leave the groups at once, so no delta queues up for a socket that is gone.
        for group in getattr(self, "watching", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None or len(text_data) > settings.MAX_FRAME_CHARS:
            await self.send_error("That request is too large to send. Shorten the message and try again.")
            return
        try:
            data = json.loads(text_data)
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            await self.send_error("That request could not be read. Reload the page and try again.")
            return
        action = data.get("action", "send")
        if action == "send":
            await self.send_message(data)
        elif action == "stop":
            await self.stop(data)
        elif action == "retry":
            await self.regenerate(data, retry=True)
        elif action == "regenerate":
            await self.regenerate(data)
        elif action == "edit":
            await self.edit(data)
        elif action == "select":
            await self.select(data)
        elif action == "sidebar":
            await self.refresh_sidebar(data)
        else:
            await self.send_error("Unknown action.")

    async def send_message(self, data: dict):
        text = await self.valid_text(data.get("message"))
        if text is None:
            return
        model = await self.chat_model(data.get("model"))
        if model is None:
            await self.send_error("That model is not available. Pick one from the list.")
            return
        conversation = None
        settings_data = None
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
        key = await self.may_generate(conversation)
        if key is False:
            return
        new = conversation is None
        conversation = await generation.start(
            user=self.user,
            conversation=conversation,
            model=model,
            text=text,
            api_key_id=key.pk if key else None,
            channel_name=self.channel_name,
            settings_data=settings_data,
        )
        self.watching.add(conversation.group_name)  # start() put this socket in the group
        await self.send(fragments.accepted(conversation, new=new))

    async def regenerate(self, data: dict, *, retry: bool = False):
        """A new version of the last answer shown. Retry is this, after a failure, with the
        answer's own model; Regenerate takes the model picked now."""
        answer = await self.owned_message(data.get("message"), Message.Role.ASSISTANT)
        if answer is None:
            await self.send_error("That answer was not found.")
            return
        conversation = answer.conversation
        if await self.generating(conversation):
            await self.send_error(BUSY)
            return
        last = await database_sync_to_async(conversation.last_answer)()
        if retry and (not answer.retryable or last is None or answer.pk != last.pk):
            await self.send_error("Only the last answer can be retried, after it failed or was cut short.")
            return
        if not retry and (last is None or answer.pk != last.pk):
            await self.send_error("Only the last answer can be regenerated.")
            return
        if answer.parent_id is None:
            await self.send_error("That answer follows no question, so it can't be asked again.")
            return
        model = await self.chat_model(data["model"]) if data.get("model") else await self.answer_model(answer)
        if model is None:
            await self.send_error("That model is not available. Pick one from the list and try again.")
            return
        key = await self.may_generate(conversation)
        if key is False:
            return
        await generation.regenerate(
            user=self.user, answer=answer, model=model, api_key_id=key.pk if key else None,
            channel_name=self.channel_name,
        )
        self.watching.add(conversation.group_name)

    async def edit(self, data: dict):
        """A new version of one of the user's questions, and a fresh answer to it."""
        question = await self.owned_message(data.get("message"), Message.Role.USER)
        if question is None:
            await self.send_error("That question was not found.")
            return
        text = await self.valid_text(data.get("text"))
        if text is None:
            return
        model = await self.chat_model(data.get("model"))
        if model is None:
            await self.send_error("That model is not available. Pick one from the list.")
            return
        conversation = question.conversation
        key = await self.may_generate(conversation)
        if key is False:
            return
        await generation.edit(
            user=self.user, question=question, text=text, model=model, api_key_id=key.pk if key else None,
            channel_name=self.channel_name,
        )
        self.watching.add(conversation.group_name)

    async def select(self, data: dict):
        """Show another version of a message (the "‹ 2/3 ›" buttons), in every tab."""
        message = await self.owned_message(data.get("message"))
        if message is None:
            await self.send_error("That version was not found.")
            return
        conversation = message.conversation
        if await self.generating(conversation):
            await self.send_error(BUSY)
            return

        @database_sync_to_async
        def show():
            with transaction.atomic():
                conversation.tree().show(message)

        await show()
        # Every tab showing the conversation (this one included) redraws its messages.
        await self.channel_layer.group_send(conversation.group_name, {"type": "chat.thread", "conversation": conversation.pk})

    async def refresh_sidebar(self, data: dict):
        """The page's sidebar marks these conversations as generating: say how they are now.

        A page (re)connects after rendering; an answer that ended in between would keep its
        marker, as the sidebar update was sent before this socket was listening.
        """
        ids = data.get("conversations")
        if not isinstance(ids, list):
            return
        ids = [i for i in ids[:200] if isinstance(i, int)]
        html = await database_sync_to_async(fragments.sidebar_items_for)(self.user, ids)
        if html:
            await self.send(html)

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

    async def may_generate(self, conversation: Conversation | None):
        """Every check before a generation starts (nothing is stored before they pass):
        nothing else generating here, the user's limits, a key, the budget.

        Returns the user's ApiKey, None for the site's shared key, or False (refused, and
        the reason already sent).
        """
        if conversation is not None and await self.generating(conversation):
            await self.send_error(BUSY)
            return False
        if refusal := await database_sync_to_async(limits.refusal)(self.user):
            await self.send_error(refusal)
            return False
        key = await database_sync_to_async(ApiKey.for_user)(self.user)
        if key is None and not await database_sync_to_async(lambda: SiteSettings.load().fallback_allowed)():
            await self.send(fragments.no_api_key())
            return False
        if budget := await self.budget_exceeded():
            await self.send_error(budget.message)
            return False
        return key

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

    async def resync(self, conversation: Conversation):
        """Bring a page that (re)connects up to date: the answer so far, then only later deltas."""
        await database_sync_to_async(generation.sweep_orphans)(self.user.pk)
        answer = await database_sync_to_async(conversation.generating_message)()
        if answer is None:
            answer = await database_sync_to_async(conversation.last_answer)()
        if answer is None:
            return
        if answer.is_streaming:
            # Ask the generation (in whichever process runs it) for its text so far;
            # deltas that arrive meanwhile wait, and those the reply covers are dropped.
            self.awaiting[answer.pk] = []
            await generation.request_snapshot(answer.pk, self.channel_name)
            self.deadline = asyncio.create_task(self.catch_up_deadline(answer.pk))
        else:
            # Finished while this page was away (or just now): show its final state.
            await self.send(await database_sync_to_async(fragments.done_for)(answer.pk))

    # --- events from the groups -------------------------------------------------------

    async def dispatch(self, message):
        # Channels closes stale database connections (a hop to a thread) before every
        # handler; a delta touches no database and comes 20 times a second per stream,
        # so it skips that (the hop was ~15% of the relay's CPU in the benchmark).
        if message["type"] == "chat.delta":
            await self.chat_delta(message)
        else:
            await super().dispatch(message)

    async def chat_turn(self, event):
        if event.get("thread"):
            # A new version: the messages shown are redrawn, the new answer empty.
            html = await database_sync_to_async(fragments.thread_for)(event["conversation"], event["answer"])
        else:
            html = await database_sync_to_async(fragments.turn_for)(
                event["question"], event["answer"], event["model_name"], event.get("previous")
            )
        self.shown_seq[event["answer"]] = 0
        await self.send(html)

    async def chat_thread(self, event):
        """Another version was picked (in this tab or another): redraw the messages shown."""
        await self.send(await database_sync_to_async(fragments.thread_for)(event["conversation"]))

    async def chat_status(self, event):
        await self.send(fragments.status(event["message"], event["text"]))

    async def chat_delta(self, event):
        answer_id = event["message"]
        if answer_id in self.awaiting:
            self.awaiting[answer_id].append(event)
            return
        if event["seq"] <= self.shown_seq.get(answer_id, 0):
            return  # already part of this socket's catch-up
        self.shown_seq[answer_id] = event["seq"]
        await self.send(fragments.delta(event))

    async def chat_catch_up(self, event):
        answer_id = event["message"]
        waiting = self.awaiting.pop(answer_id, None)
        if waiting is None:
            return  # not asked for, or already given up on
        self.shown_seq[answer_id] = event["seq"]
        await self.send(fragments.catch_up(answer_id, event["answer"], event["thinking"]))
        for delta in sorted(waiting, key=lambda d: d["seq"]):
            await self.chat_delta(delta)

    async def catch_up_deadline(self, answer_id: int):
        await asyncio.sleep(settings.STREAM_CATCH_UP_TIMEOUT)
        # Through the channel, so it is handled in turn with the other events.
        await self.channel_layer.send(self.channel_name, {"type": "chat.catch_up_timeout", "message": answer_id})

    async def chat_catch_up_timeout(self, event):
        """No generation answered: it has just ended, or its process died. Show what is stored."""
        if self.awaiting.pop(event["message"], None) is not None:
            await database_sync_to_async(generation.sweep_orphans)(self.user.pk)
            await self.send(await database_sync_to_async(fragments.done_for)(event["message"]))

    async def chat_done(self, event):
        self.awaiting.pop(event["message"], None)
        self.shown_seq.pop(event["message"], None)
        # Rendering a long answer's markdown takes a while: not on the event loop.
        await self.send(await database_sync_to_async(fragments.done_for)(event["message"]))

    async def sidebar_remove(self, event):
        """A conversation was deleted (maybe in another tab): out of the sidebar."""
        await self.send(fragments.sidebar_remove(event["conversation"]))

    async def sidebar_update(self, event):
        # The socket that started a new conversation already added it to its sidebar.
        prepend = event.get("new") and event.get("origin") != self.channel_name
        await self.send(await database_sync_to_async(fragments.sidebar_item_for)(event["conversation"], prepend))

    # --- helpers ----------------------------------------------------------------------

    async def watch(self, group: str):
        await self.channel_layer.group_add(group, self.channel_name)
        self.watching.add(group)

    async def send_error(self, text: str):
        await self.send(fragments.error(text))

    async def budget_exceeded(self) -> budgets.BudgetState | None:
        """The user's budget state if this month's budget is spent: no new generation then.

        One already running is not stopped: it finishes and its cost is recorded.
        """
        state = await database_sync_to_async(budgets.state)(self.user)
        return state if state.exceeded else None

    async def generating(self, conversation: Conversation) -> bool:
        await database_sync_to_async(generation.sweep_orphans)(self.user.pk)
        return await database_sync_to_async(conversation.generating_message)() is not None

    @database_sync_to_async
    def owned(self, conversation_id) -> Conversation | None:
        """The user's conversation with this id, or None: another user's is 'not found'."""
        try:
            return Conversation.objects.get(pk=int(conversation_id), user=self.user)
        except (Conversation.DoesNotExist, TypeError, ValueError):
            return None

    @database_sync_to_async
    def owned_message(self, message_id, role: str | None = None) -> Message | None:
        """The user's message with this id (of this role), or None: another user's is "not found"."""
        try:
            messages = Message.objects.select_related("conversation").filter(conversation__user=self.user)
            if role is not None:
                messages = messages.filter(role=role)
            return messages.get(pk=int(message_id))
        except (Message.DoesNotExist, TypeError, ValueError):
            return None

    @database_sync_to_async
    def chat_model(self, model_id) -> GatewayModel | None:
        try:
            return GatewayModel.for_chat().get(pk=int(model_id))
        except (GatewayModel.DoesNotExist, TypeError, ValueError):
            return None

    @database_sync_to_async
    def answer_model(self, answer: Message) -> GatewayModel | None:
        return GatewayModel.for_chat().filter(service_name=answer.service_name, model_name=answer.model_name).first()
