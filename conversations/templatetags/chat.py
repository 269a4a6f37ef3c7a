from django import template
from django.utils.safestring import mark_safe

from conversations.costs.money import format_money
from conversations.rendering import render_markdown

register = template.Library()


@register.filter
def money(amount):
    return format_money(amount)


@register.filter
def markdown(text):
    # Safe by construction: rendering.py sanitises with an allowlist.
    return mark_safe(render_markdown(text or ""))
