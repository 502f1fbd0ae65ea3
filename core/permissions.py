"""Roles of a workspace's members. What each role may do is decided here, for the API, the pages and the sockets
alike; they ask this module and never compare role names themselves."""
from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


MANAGERS = (Role.OWNER, Role.ADMIN)


def can_manage(role):
    """Owners and admins change the workspace's settings, sessions, keys and webhooks."""
    return role in MANAGERS


def can_export_data(role):
    """Only owners take a copy of all the workspace's data (GDPR export)."""
    return role == Role.OWNER
