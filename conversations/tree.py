"""A conversation's messages as a tree of versions (see Tree)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conversations.models import Message


class Tree:
    """A conversation's messages as a tree: each message follows its parent (a question
    follows the answer it was asked after; an answer follows its question). Siblings are
    versions: a regenerated answer is a sibling of the answer it replaces, an edited
    question a sibling of the question it replaces. At each branch one sibling is
    `selected`: the version shown. Rows need only `pk`, `parent_id` and `selected`.
    """

    # What a row of the tree needs (conversation_id too: a related manager reads it).
    FIELDS = ("id", "conversation_id", "parent_id", "selected", "role")

    def __init__(self, messages: Iterable[Message]) -> None:
        self.by_id: dict[int, Message] = {}
        self.children: dict[int | None, list[Message]] = defaultdict(list)
        for m in sorted(messages, key=lambda m: m.pk):
            self.by_id[m.pk] = m
        for m in self.by_id.values():
            parent = m.parent_id if m.parent_id in self.by_id else None
            self.children[parent].append(m)

    def shown_child(self, parent_id: int | None) -> Message | None:
        """The version shown among `parent_id`'s children: the selected one (the newest if
        several are, or if none is)."""
        children = self.children.get(parent_id)
        if not children:
            return None
        selected = [m for m in children if m.selected]
        return (selected or children)[-1]

    def path(self) -> list[Message]:
        path = []
        node = self.shown_child(None)
        while node is not None:
            path.append(node)
            node = self.shown_child(node.pk)
        return path

    def ancestors(self, message_id: int | None) -> list[Message]:
        """`message_id` and the messages before it, oldest first."""
        chain = []
        while message_id is not None and message_id in self.by_id:
            chain.append(self.by_id[message_id])
            message_id = self.by_id[message_id].parent_id
        return chain[::-1]

    def siblings(self, message: Message) -> list[Message]:
        parent = message.parent_id if message.parent_id in self.by_id else None
        return self.children.get(parent, [])

    def annotate(self, messages: Iterable[Message]) -> None:
        """Set version_index (from 1), version_count, prev_version_id, next_version_id and
        has_children on each message (the page's "‹ 2/3 ›")."""
        for m in messages:
            siblings = [s.pk for s in self.siblings(m)] or [m.pk]
            index = siblings.index(m.pk) if m.pk in siblings else 0
            m.version_index = index + 1
            m.version_count = len(siblings)
            m.prev_version_id = siblings[index - 1] if index > 0 else None
            m.next_version_id = siblings[index + 1] if index + 1 < len(siblings) else None
            m.has_children = bool(self.children.get(m.pk))

    def show(self, message: Message) -> None:
        """Make `message` (and every message before it) the version shown at its branch."""
        manager = type(message)._default_manager  # Message: the tree itself imports no model
        for node in self.ancestors(message.pk):
            stale = [s.pk for s in self.siblings(node) if s.pk != node.pk and s.selected]
            if stale:
                manager.filter(pk__in=stale).update(selected=False)
            if not node.selected:
                manager.filter(pk=node.pk).update(selected=True)
