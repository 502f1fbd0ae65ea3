"""{% load permissions %}: {% if request.membership|can:"webhooks.manage" %} asks the one permission table."""
from django import template

from core.permissions import can as membership_can

register = template.Library()


@register.filter
def can(membership, perm):
    return membership_can(membership, perm)
