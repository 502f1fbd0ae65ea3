from django import template

from tenants.models import Plan

register = template.Library()


@register.filter
def limit(value):
    """-1 → Unlimited."""
    return Plan.describe_limit(value)
