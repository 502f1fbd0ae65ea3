"""A campaign's figures, from its recipient rows and their messages (one grouped statement), for the API, the page and
the live socket (group t.<schema>.campaign.<id>, {"type": "campaign.progress", "data": progress(...)})."""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone
from django_tenants.utils import schema_context

from whatsapp.messaging.models import Message

from . import planning
from .models import Campaign, CampaignRecipient

log = logging.getLogger(__name__)
R = CampaignRecipient.Status
M = Message.Status
KEYS = ("pending", "queued", "sent", "delivered", "read", "failed", "skipped", "cancelled", "replied", "opted_out")
# A recipient's state, from its own row and its message's: what the counts and ?status= filter use.
STATUSES = ("pending", "queued", "sent", "delivered", "read", "failed", "skipped", "cancelled")


def recipient_status(status, message_status):
    if status != R.QUEUED or message_status is None:
        return status if status != R.QUEUED else "queued"
    if message_status in (M.QUEUED, M.SENDING):
        return "queued"
    return message_status


def group(schema_name, campaign_id):
    return f"t.{schema_name}.campaign.{campaign_id}"


def _empty():
    return dict.fromkeys(KEYS, 0)


def _add(counts, state, n, replied, opted):
    counts[state] += n
    # cumulative: a read message was delivered and sent too
    if state in ("delivered", "read"):
        counts["sent"] += n
    if state == "read":
        counts["delivered"] += n
    counts["replied"] += replied
    counts["opted_out"] += opted


def progress(campaign, tenant, now=None):
    now = now or timezone.now()
    rows = (CampaignRecipient.objects.filter(campaign=campaign)
            .values("session_id", "status", "message__status", "cold")
            .annotate(n=Count("id"), replied=Count("replied_at"), opted=Count("opted_out_at")))
    total, per_session, cold_pending = _empty(), {}, 0
    for row in rows:
        state = recipient_status(row["status"], row["message__status"])
        cold_pending += row["n"] if state == "pending" and row["cold"] else 0
        _add(total, state, row["n"], row["replied"], row["opted"])
        if row["session_id"] is not None:
            _add(per_session.setdefault(row["session_id"], _empty()), state, row["n"], row["replied"], row["opted"])
    senders = list(campaign.senders.select_related("session").order_by("session__name"))
    active = [s for s in senders if s.session.status == "connected"]
    eta = None
    if campaign.status in (Campaign.Status.RUNNING, Campaign.Status.SCHEDULED) and total["pending"]:
        start = max(now, campaign.start_at) if campaign.start_at else now
        finish = planning.estimate(campaign, total["pending"], cold_pending / total["pending"], len(active), start,
                                   planning.timezone_of(tenant))
        eta = finish.isoformat() if finish else None
    elif campaign.status in (Campaign.Status.RUNNING, Campaign.Status.SCHEDULED):
        eta = now.isoformat()
    return {
        "id": campaign.pk, "status": campaign.status, "pause_reason": campaign.pause_reason,
        "total": campaign.planned_count, "counts": total, "estimated_finish": eta,
        "sessions": [{"session": s.session.name, "connected": s.session.status == "connected",
                      "sent_today": s.sent_on_day, "cold_today": s.cold_on_day,
                      "next_send_at": s.next_send_at.isoformat() if s.next_send_at else None,
                      "counts": per_session.get(s.session_id, _empty())} for s in senders],
    }


def push(campaign, tenant, figures=None):
    """Send the campaign's figures (`figures`, or as they are once the transaction commits) to its open pages when
    the transaction commits (never raises)."""
    schema_name = connection.schema_name

    def send():
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            data = figures
            if data is None:
                with schema_context(schema_name):
                    data = progress(Campaign.objects.get(pk=campaign.pk), tenant)
            async_to_sync(layer.group_send)(group(schema_name, campaign.pk), {"type": "campaign.progress",
                                                                             "data": data})
        except Exception:  # open pages catch up on their next update or reconnect; the rows hold the truth
            log.warning("live progress of campaign %s failed", campaign.pk, exc_info=True)

    transaction.on_commit(send)
