"""Analytics rollups, custom events and usage (tenant schema).

Counts come from rollups, never from counting messages at request time. A Postgres trigger on whatsapp_message
(analytics/migrations, analytics.rollups.TRIGGER_SQL) appends one MessageCounter row per insert, status change and
delete: the sending pipeline's code is not touched and every write path (the ORM, core.rows' statements, COPY) is
counted. The rollup job (analytics.rollups.fold, beat every ANALYTICS_ROLLUP_SECONDS) takes the counter rows away
in one statement and adds them to the hourly rollups; reads add the few rows not folded yet, so figures are exact
at every moment. `manage.py rebuild_analytics` recomputes everything from messages.
"""
from django.db import models
from django.utils import timezone


class MessageCounter(models.Model):
    """One change of one message, appended by the trigger and removed by the fold: the message leaves old_* (NULL
    for an insert) and joins new_* (NULL for a delete). hour: the UTC hour the message was created in."""

    message_id = models.BigIntegerField()
    session_id = models.BigIntegerField()
    conversation_id = models.BigIntegerField(null=True)
    hour = models.DateTimeField()
    direction = models.CharField(max_length=3)
    type = models.CharField(max_length=20)
    chat_jid = models.CharField(max_length=100)
    old_status = models.CharField(max_length=20, null=True)
    new_status = models.CharField(max_length=20, null=True)
    old_reason = models.CharField(max_length=200, null=True)
    new_reason = models.CharField(max_length=200, null=True)
    old_bytes = models.BigIntegerField(default=0)
    new_bytes = models.BigIntegerField(default=0)


class HourlyRollup(models.Model):
    """How many messages created in this UTC hour, of this session, direction, type, are now in this status (and
    their media bytes)."""

    hour = models.DateTimeField()
    session_id = models.BigIntegerField()
    direction = models.CharField(max_length=3)
    type = models.CharField(max_length=20)
    status = models.CharField(max_length=20)
    count = models.BigIntegerField(default=0)
    media_bytes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "session_id", "direction", "type", "status"],
                                               name="analytics_hourly_key")]
        indexes = [models.Index(fields=["hour"], name="analytics_hourly_hour_idx")]


class ChatMonthly(models.Model):
    """Messages exchanged with one chat (a contact or a group) per UTC month (its first day): top contacts read a
    month's few thousand rows, not a row per chat per day (ChatEdgeHourly turns it into the workspace's month)."""

    month = models.DateField()
    session_id = models.BigIntegerField()
    chat_jid = models.CharField(max_length=100)
    sent = models.BigIntegerField(default=0)
    received = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["month", "session_id", "chat_jid"], name="analytics_chat_key")]
        indexes = [models.Index(fields=["month"], name="analytics_chat_month_idx")]


class ChatEdgeHourly(models.Model):
    """Messages exchanged with one chat in one UTC hour, kept only for the hours within EDGE_HOURS of a UTC month's
    start or end (analytics.rollups): a workspace's month starts up to 14 hours before or 12 after the UTC month, so
    its top contacts are ChatMonthly's UTC month corrected by the few hours between the two starts and ends."""

    hour = models.DateTimeField()
    session_id = models.BigIntegerField()
    chat_jid = models.CharField(max_length=100)
    sent = models.BigIntegerField(default=0)
    received = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "session_id", "chat_jid"],
                                               name="analytics_chat_edge_key")]
        indexes = [models.Index(fields=["hour"], name="analytics_chat_edge_hour_idx")]


class FailureHourly(models.Model):
    """Messages now failed, by the UTC hour they were created in and their reason (its first 200 characters):
    read by the workspace's days."""

    hour = models.DateTimeField()
    session_id = models.BigIntegerField()
    reason = models.CharField(max_length=200)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "session_id", "reason"],
                                               name="analytics_failure_hour_key")]
        indexes = [models.Index(fields=["hour"], name="analytics_failure_hour_idx")]


class FirstResponse(models.Model):
    """An outgoing message that answered inbound ones: seconds from the first of them to it."""

    message_id = models.BigIntegerField(unique=True)
    session_id = models.BigIntegerField()
    conversation_id = models.BigIntegerField()
    created_at = models.DateTimeField()
    hour = models.DateTimeField()
    seconds = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["conversation_id", "created_at"], name="analytics_response_conv_idx")]


class Event(models.Model):
    """A custom event the tenant's software records (POST /api/v1/analytics/events); kept
    ANALYTICS_RETENTION_DAYS."""

    session_name = models.CharField(max_length=64, blank=True)
    event_type = models.CharField(max_length=64)
    event_data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["event_type", "created_at"], name="analytics_event_type_idx")]

    def __str__(self):
        return self.event_type


class ApiUsageHourly(models.Model):
    """API requests answered in one UTC hour, per API key (api_key_id 0: the browser's own session)."""

    hour = models.DateTimeField()
    api_key_id = models.BigIntegerField()
    requests = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "api_key_id"], name="analytics_api_usage_key")]


class FirstResponseHourly(models.Model):
    """First responses of one UTC hour and session by bucket of their time (analytics.rollups.RESPONSE_BUCKETS):
    averages exact (seconds_sum / count), medians estimated within a bucket, read by the workspace's days without
    touching every response."""

    hour = models.DateTimeField()
    session_id = models.BigIntegerField()
    bucket = models.SmallIntegerField()
    count = models.BigIntegerField(default=0)
    seconds_sum = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "session_id", "bucket"],
                                               name="analytics_response_hour_key")]
        indexes = [models.Index(fields=["hour"], name="analytics_response_hour_idx")]
