"""The shared inbox's own rows (tenant schema): where round robin stands. A conversation's status and assignee
live on the conversation (whatsapp.conversations.models.Conversation). Changed only by whatsapp.inbox.actions."""
from django.db import models


class RoundRobin(models.Model):
    """One row per workspace: the member who got the last conversation by round robin (an accounts.Membership id;
    no foreign key into the public schema, as on Conversation.assignee_id). Locked while the next one is picked,
    so two assignments at once never pick the same member twice in a row."""

    last_member_id = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)
