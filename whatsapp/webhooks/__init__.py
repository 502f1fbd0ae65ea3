"""Signed, durable webhooks (Standard Webhooks): endpoints and deliveries live in whatsapp.models (tenant schema).

actions.emit_event stores one delivery per subscribed endpoint and wakes the schema's pump on commit (pump.py);
failures wait in the database (next_attempt_at) for the deliver_due_webhooks sweeper, on the schedule of
delivery.RETRY_SCHEDULE, and end dead-lettered; the API lists them with every attempt and replays them.
"""

EVENTS = [
    "message.received",
    "message.sent",
    "message.delivered",
    "message.read",
    "message.failed",
    "session.qr",
    "session.connected",
    "session.disconnected",
    "session.logged_out",
    "conversation.handoff_requested",  # the contact (or a rule, or the bot) asked for a person: whatsapp.automation
    "campaign.started",
    "campaign.progress",
    "campaign.paused",
    "campaign.finished",
    "alert.firing",  # an alert about the workspace's numbers, webhooks or broadcasts (alerts: its alert settings)
    "alert.resolved",
]
