from __future__ import annotations

import re
from typing import cast

from django import template
from django.template.base import NodeList, Parser, TextNode, Token
from django.utils.safestring import mark_safe

from conversations.costs.money import format_money
from conversations.rendering import render_markdown

register = template.Library()

_LINE_BREAK = re.compile(r"\n\s*")


@register.filter
def money(amount):
    return format_money(amount)


@register.filter
def markdown(text):
    # Safe by construction: rendering.py sanitises with an allowlist.
    return mark_safe(render_markdown(text or ""))


class OneLineNode(template.Node):
    def __init__(self, nodelist: NodeList) -> None:
        self.nodelist = nodelist

    def render(self, context: template.Context) -> str:
        return self.nodelist.render(context)


@register.tag
def oneline(parser: Parser, token: Token) -> OneLineNode:
    """`{% oneline %}…{% endoneline %}` drops the template's own line breaks (and the
    indentation after them) between the tags, once, when the template is parsed.

    So markup can be written on several lines where whitespace would show: an element
    styled when `:empty`, text that streams, a fragment a test compares byte for byte.
    Values keep their whitespace; break lines only where no space is wanted.
    """
    nodelist = parser.parse(("endoneline",))
    parser.delete_first_token()
    for node in cast("list[TextNode]", nodelist.get_nodes_by_type(TextNode)):
        node.s = _LINE_BREAK.sub("", node.s)
    return OneLineNode(nodelist)
