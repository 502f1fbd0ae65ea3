"""Per-number pacing against bans: when may the next outgoing message of a session go.

WhatsApp bans numbers that send like machines. Each session (one number) sends at most one message per
min_interval + a random 0..jitter, at most daily_cap messages per UTC day, and warmup_daily_cap per day while
the number is new (within warmup_days of being linked). The tenant's PacingPolicy row (one per schema) sets
these; an empty field takes the installation's WHATSAPP_PACING_* default, and WHATSAPP_PACING_ENABLED=false or
a policy with enabled off turns pacing off.

Slots are reserved under a row lock on the session (WhatsAppSession.next_send_at is the earliest time the next
reservation may take), so concurrent dispatches get successive slots. A message that must wait keeps its slot
in Message.next_attempt_at and Message.paced_until (whatsapp.messaging.actions.dispatch), and
such messages count against the cap of the day their slot falls in, so a backlog never overshoots a day's cap.
"""
import random
from dataclasses import asdict, dataclass
from datetime import UTC, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from whatsapp.sessions.models import WhatsAppSession

from .models import Message, PacingPolicy

FIELDS = ("min_interval_ms", "jitter_ms", "daily_cap", "warmup_days", "warmup_daily_cap")
# Less than a second between two messages is how machines send, and WhatsApp bans numbers that send like machines:
# the least gap a tenant may set while pacing is on (switching pacing off is the deliberate way to send faster).
MIN_INTERVAL_FLOOR_MS = 1000
FLOOR_REASON = (f"The gap between two messages must be at least {MIN_INTERVAL_FLOOR_MS} ms (one second): faster "
                "is how machines send, and WhatsApp bans numbers that send like machines. To send without any "
                "gap, switch pacing off, at the number's risk.")
# Bounds of the policy fields (whatsapp.messaging.policy.update_pacing_policy validates against these).
BOUNDS = {
    "min_interval_ms": (MIN_INTERVAL_FLOOR_MS, 3_600_000),
    "jitter_ms": (0, 3_600_000),
    "daily_cap": (1, 1_000_000),
    "warmup_days": (0, 365),
    "warmup_daily_cap": (1, 1_000_000),
}
# A day further than this with no room (a backlog of a year's cap) is given anyway rather than searched for.
MAX_DAYS_AHEAD = 400
DAY = timedelta(days=1)

_random = random.SystemRandom()


@dataclass(frozen=True)
class Policy:
    enabled: bool
    min_interval_ms: int
    jitter_ms: int
    daily_cap: int
    warmup_days: int
    warmup_daily_cap: int

    def cap_for_day(self, day_start, linked_at):
        """The cap of the UTC day starting at day_start: the warm-up cap while the number is new."""
        if linked_at is not None and self.warmup_days and day_start < linked_at + timedelta(days=self.warmup_days):
            return min(self.daily_cap, self.warmup_daily_cap)
        return self.daily_cap

    def gap(self, rng=None):
        jitter = (rng or _random).randint(0, self.jitter_ms) if self.jitter_ms else 0
        return timedelta(milliseconds=self.min_interval_ms + jitter)


def installation_defaults():
    return {
        "min_interval_ms": settings.WHATSAPP_PACING_MIN_INTERVAL_MS,
        "jitter_ms": settings.WHATSAPP_PACING_JITTER_MS,
        "daily_cap": settings.WHATSAPP_PACING_DAILY_CAP,
        "warmup_days": settings.WHATSAPP_PACING_WARMUP_DAYS,
        "warmup_daily_cap": settings.WHATSAPP_PACING_WARMUP_DAILY_CAP,
    }


def stored_policy():
    """This schema's PacingPolicy row, or None when the tenant never changed anything."""

    return PacingPolicy.objects.order_by("pk").first()


def current_policy(row=None):
    """The effective policy in this schema: the tenant's row over the installation's defaults."""
    row = row if row is not None else stored_policy()
    values = installation_defaults()
    if row is not None:
        values.update({name: getattr(row, name) for name in FIELDS if getattr(row, name) is not None})
    enabled = settings.WHATSAPP_PACING_ENABLED and (row is None or row.enabled)
    return Policy(enabled=enabled, **values)


def describe(row=None):
    """The policy as the API and page show it: what the tenant set (null = default), the defaults, the
    effective values."""
    row = row if row is not None else stored_policy()
    policy = current_policy(row)
    return {
        "enabled": row.enabled if row is not None else True,
        **{name: getattr(row, name) if row is not None else None for name in FIELDS},
        "installation_enabled": settings.WHATSAPP_PACING_ENABLED,
        "defaults": installation_defaults(),
        "effective": asdict(policy),
        "updated_at": row.updated_at.isoformat() if row is not None else None,
    }


def day_start(moment):
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def used_on_day(session_id, start, exclude_message_id=None):
    """Messages of the session that take a place in the day [start, start + 1 day): sent that day, or queued /
    sending with their (next) attempt in it: reserved slots count before they are sent."""

    end = start + DAY
    rows = Message.objects.filter(session_id=session_id, direction=Message.Direction.OUT).filter(
        Q(sent_at__gte=start, sent_at__lt=end)
        | Q(status__in=[Message.Status.QUEUED, Message.Status.SENDING], next_attempt_at__gte=start,
            next_attempt_at__lt=end))
    if exclude_message_id is not None:
        rows = rows.exclude(pk=exclude_message_id)
    return rows.count()


def _ensure_linked_at(session, now):
    # The host records connected_at; the first link of a number is when pacing first sees it connected.
    if session.linked_at is None:
        session.linked_at = session.connected_at or now
        return True
    return False


def reserve_slot(session_id, now, *, message_id=None, rng=None):
    """Reserve the next send slot of this session; returns the time the message may be sent (now = at once).
    `message_id` is the message the slot is for (it does not count against its own day)."""

    policy = current_policy()
    if not policy.enabled:
        return now
    with transaction.atomic():
        session = WhatsAppSession.objects.select_for_update().get(pk=session_id)
        fields = ["next_send_at"]
        if _ensure_linked_at(session, now):
            fields.append("linked_at")
        slot = max(now, session.next_send_at or now)
        for _ in range(MAX_DAYS_AHEAD):
            start = day_start(slot)
            if used_on_day(session_id, start, message_id) < policy.cap_for_day(start, session.linked_at):
                break
            # The day is full: the first slot of the next day, jittered so that numbers do not all start at 00:00.
            slot = start + DAY + (policy.gap(rng) - timedelta(milliseconds=policy.min_interval_ms))
        session.next_send_at = slot + policy.gap(rng)
        session.save(update_fields=fields)
    return slot


def queue_stats(session, now=None):
    """What the session page and GET /api/v1/sessions/{name} show about the session's queue."""

    now = now or timezone.now()
    policy = current_policy()
    start = day_start(now)
    outgoing = Message.objects.filter(session=session, direction=Message.Direction.OUT)
    queued = outgoing.filter(status=Message.Status.QUEUED)
    waiting = queued.filter(paced_until__isnull=False)
    next_waiting = waiting.order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first()
    linked_at = session.linked_at or session.connected_at
    warmup_until = linked_at + timedelta(days=policy.warmup_days) if linked_at and policy.warmup_days else None
    # A number not linked yet is new when it links: its first days are under the warm-up cap, so that is the cap
    # to show before (and right after) the scan, not the full one.
    cap = policy.cap_for_day(start, linked_at or now)
    next_send_at = session.next_send_at if session.next_send_at and session.next_send_at > now else None
    return {
        "pacing_enabled": policy.enabled,
        "queued": queued.count(),
        "waiting": waiting.count(),
        "sending": outgoing.filter(status=Message.Status.SENDING).count(),
        "next_send_at": _iso(next_send_at if policy.enabled else None),
        "next_queued_send_at": _iso(next_waiting),
        "sent_today": outgoing.filter(sent_at__gte=start, sent_at__lt=start + DAY).count(),
        "daily_cap": cap if policy.enabled else None,
        "day_resets_at": _iso(start + DAY),
        "warmup": {
            "active": bool(policy.enabled and warmup_until and now < warmup_until),
            "until": _iso(warmup_until),
            "daily_cap": min(policy.daily_cap, policy.warmup_daily_cap),
        },
        "min_interval_ms": policy.min_interval_ms,
        "jitter_ms": policy.jitter_ms,
    }


def _iso(value):
    return value.isoformat() if value else None
