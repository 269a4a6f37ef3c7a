"""The chat socket: checks who is asking and what for, then delegates.

One socket per page. It watches the conversation the page shows (its Channels group),
hands "send" and "stop" to the generation module, and turns the group's events into
htmx out-of-band fragments (see fragments.py).
"""

from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from conversations import fragments, generation
from conversations.models import ApiKey, Conversation, GatewayModel, Message, SiteSettings


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.user = self.scope["user"]
        if not self.user.is_authenticated:
            await self.close()  # before accept: the handshake is refused
            return
        self.shown_seq: dict[int, int] = {}  # answer id -> last delta shown
        self.watching: set[str] = set()  # groups this socket joined
        conversation_id = self.scope["url_route"]["kwargs"].get("conversation_id")
        conversation = None
        if conversation_id is not None:
            conversation = await self.owned(conversation_id)
            if conversation is None:
                await self.close()
                return
            await self.channel_layer.group_add(conversation.group_name, self.channel_name)
            self.watching.add(conversation.group_name)
        await self.accept()
        if conversation is not None:
            await self.catch_up(conversation)

    async def disconnect(self, code):
        # Leave the groups at once, so no delta queues up for a socket that is gone.
        for group in getattr(self, "watching", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            if text_data is None or len(text_data) > settings.MAX_MESSAGE_CHARS * 2 + 10_000:
                raise ValueError
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
        else:
            await self.send_error("Unknown action.")

    async def send_message(self, data: dict):
        text = data.get("message")
        if not isinstance(text, str) or not text.strip():
            await self.send_error("Type a message first.")
            return
        text = text.strip()
        if len(text) > settings.MAX_MESSAGE_CHARS:
            await self.send_error(
                f"Your message is {len(text):,} characters long; the limit is "
                f"{settings.MAX_MESSAGE_CHARS:,}. Shorten it and send again."
            )
            return
        model = await self.chat_model(data.get("model"))
        if model is None:
            await self.send_error("That model is not available. Pick one from the list.")
            return
        conversation = None
        if data.get("conversation"):
            conversation = await self.owned(data["conversation"])
            if conversation is None:
                await self.send_error("That conversation was not found.")
                return
            if await database_sync_to_async(conversation.generating_message)():
                await self.send_error("An answer is still being generated here. Stop it or wait for it.")
                return
        key = await database_sync_to_async(ApiKey.for_user)(self.user)
        if key is None and not await database_sync_to_async(lambda: SiteSettings.load().fallback_allowed)():
            await self.send(fragments.no_api_key())
            return
        new = conversation is None
        conversation = await generation.start(
            user=self.user,
            conversation=conversation,
            model=model,
            text=text,
            api_key_id=key.pk if key else None,
            channel_name=self.channel_name,
        )
        self.watching.add(conversation.group_name)  # start() put this socket in the group
        await self.send(fragments.accepted(conversation, new=new))

    async def stop(self, data: dict):
        conversation = await self.owned(data.get("conversation"))
        if conversation is None:
            await self.send_error("That conversation was not found.")
            return
        answer = await database_sync_to_async(conversation.generating_message)()
        if answer is None or not generation.stop(answer.pk):
            await self.send_error("Nothing is being generated here.")

    async def catch_up(self, conversation: Conversation):
        """A socket joining mid-answer gets the text so far, then only later deltas."""
        answer = await database_sync_to_async(conversation.generating_message)()
        running = answer and generation.running(answer.pk)
        if running:
            snapshot = running.snapshot()
            self.shown_seq[answer.pk] = snapshot.seq
            await self.send(fragments.catch_up(answer.pk, snapshot))

    # --- events from the conversation's group ---------------------------------------

    async def chat_turn(self, event):
        question, answer = await database_sync_to_async(load_messages)(event["question"], event["answer"])
        self.shown_seq[answer.pk] = 0
        await self.send(fragments.turn(question, answer))

    async def chat_delta(self, event):
        answer_id = event["message"]
        if event["seq"] <= self.shown_seq.get(answer_id, 0):
            return  # already part of this socket's catch-up
        self.shown_seq[answer_id] = event["seq"]
        await self.send(fragments.delta(event))

    async def chat_done(self, event):
        (answer,) = await database_sync_to_async(load_messages)(event["message"])
        self.shown_seq.pop(answer.pk, None)
        await self.send(fragments.done(answer))

    # --- helpers --------------------------------------------------------------------

    async def send_error(self, text: str):
        await self.send(fragments.error(text))

    @database_sync_to_async
    def owned(self, conversation_id) -> Conversation | None:
        """The user's conversation with this id, or None: another user's is 'not found'."""
        try:
            return Conversation.objects.get(pk=int(conversation_id), user=self.user)
        except (Conversation.DoesNotExist, TypeError, ValueError):
            return None

    @database_sync_to_async
    def chat_model(self, model_id) -> GatewayModel | None:
        try:
            return GatewayModel.for_chat().get(pk=int(model_id))
        except (GatewayModel.DoesNotExist, TypeError, ValueError):
            return None


def load_messages(*ids: int) -> list[Message]:
    by_id = Message.objects.select_related("cost_log").in_bulk(ids)
    return [by_id[i] for i in ids]
