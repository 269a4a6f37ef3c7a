from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import cast

from django import template
from django.template.base import NodeList, Parser, TextNode, Token
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from conversations.costs.money import format_money
from conversations.models import GatewayModel
from conversations.rendering import render_markdown

register = template.Library()

_LINE_BREAK = re.compile(r"\n\s*")


def short_money(amount: Decimal) -> str:
    """An amount to scan, never in exponent form: below $1 three significant digits
    (`$0.0000390`, `$0.301`), from $1 cents with thousands separators (`$1,234.57`)."""
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount == 0:
        return "$0.00"
    if amount < 1:
        rounded = _significant(amount, amount.adjusted())
        if rounded.adjusted() > amount.adjusted():  # 0.0009996 became 0.001000: three digits again
            rounded = _significant(rounded, rounded.adjusted())
        if rounded < 1:
            return f"{sign}${rounded:f}"
    return f"{sign}${amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,f}"


def _significant(amount: Decimal, exponent: int) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(exponent - 2), rounding=ROUND_HALF_UP)


@register.filter
def money(amount: Decimal | None) -> str:
    """An amount as pages show it: short, with the exact amount (every digit the gateway
    reported) in a tooltip. Exports write the exact amount."""
    if amount is None or amount == "":
        return "—"
    amount = Decimal(amount)
    return format_html('<span class="money" title="{}">{}</span>', format_money(amount), short_money(amount))


@register.simple_tag(takes_context=True)
def model_label(context: template.Context, message) -> str:
    """The catalogue's label of the model that wrote `message` (the picker's name for
    it), or its id if the model has left the catalogue.

    The labels are read once per render, not once per answer: each partial renders in a
    render context of its own, so they are kept on the render as a whole. An answer
    drawn as it starts (relay/fragments.py) has no service name: its model id alone
    finds the label, when one service has that model.
    """
    labels = getattr(context.render_context, "model_labels", None)
    if labels is None:
        labels = {}
        for service_name, model_name, label in GatewayModel.objects.values_list("service_name", "model_name", "label"):
            labels[(service_name, model_name)] = label
            labels[model_name] = None if model_name in labels else label  # None: several services have it
        context.render_context.model_labels = labels  # type: ignore[attr-defined]
    key = (message.service_name, message.model_name) if message.service_name else message.model_name
    return labels.get(key) or message.model_name


@register.filter
def model_id(message) -> str:
    """`service/model`, as the gateway knows the model (the label's tooltip)."""
    return f"{message.service_name}/{message.model_name}" if message.service_name else message.model_name


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
