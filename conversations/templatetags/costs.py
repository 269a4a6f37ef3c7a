from decimal import ROUND_HALF_EVEN, Decimal

from django import template

register = template.Library()


@register.filter
def thousands(number):
    """`1,234,567`: token and generation counts at a glance."""
    return "—" if number is None or number == "" else f"{number:,}"


@register.filter
def percent(share):
    """A share of the total, to one decimal (`12.5%`); `<0.1%` rather than a misleading `0%`."""
    if share is None or share == "":
        return "—"
    share = Decimal(share)
    if 0 < share < Decimal("0.1"):
        return "<0.1%"
    return f"{share.quantize(Decimal('0.1'), rounding=ROUND_HALF_EVEN)}%"
