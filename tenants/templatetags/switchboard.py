from django import template

from core.permissions import can
from tenants.models import Plan

register = template.Library()


@register.filter
def limit(value):
    """-1 → Unlimited."""
    return Plan.describe_limit(value)


@register.filter
def may(membership, perm):
    """{% if request.membership|may:"workspace.delete" %}: the permission table (core.permissions), in a template."""
    return can(membership, perm)
