from django import template

from analytics.views import usage_card_context

register = template.Library()


@register.filter
def percent(value):
    """0.8543 -> "85.4%" (the page's script writes live rates the same way); None -> "–"."""
    return "–" if value is None else f"{value * 100:.1f}%"


@register.inclusion_tag("analytics/_usage_card.html", takes_context=True)
def usage_card(context):
    """This month's usage against the plan's limits (the billing page and the dashboard)."""
    return usage_card_context(context["request"]) or {"usage": None}


@register.filter
def limit_of(value):
    """A plan limit for people: -1 or None is "no limit"."""
    return "no limit" if value is None or value == -1 else value
