"""Read-side queries of campaigns used by the API and the pages: recipients with their state, filtered."""
from django.db.models import Q

from whatsapp.messaging.models import Message

from . import progress
from .models import CampaignRecipient

FILTERS = (*progress.STATUSES, "replied", "opted_out")


def _iso(value):
    return value.isoformat() if value else None


def recipient_filter(status_name):
    """?status= as a condition; sent and delivered are cumulative (a read message was delivered and sent)."""
    M, R = Message.Status, CampaignRecipient.Status
    return {
        "pending": Q(status=R.PENDING), "skipped": Q(status=R.SKIPPED), "cancelled": Q(status=R.CANCELLED),
        "queued": Q(status=R.QUEUED) & (Q(message__status__in=[M.QUEUED, M.SENDING]) | Q(message__isnull=True)),
        "sent": Q(status=R.QUEUED, message__status__in=[M.SENT, M.DELIVERED, M.READ]),
        "delivered": Q(status=R.QUEUED, message__status__in=[M.DELIVERED, M.READ]),
        "read": Q(status=R.QUEUED, message__status=M.READ),
        "failed": Q(status=R.FAILED) | Q(status=R.QUEUED, message__status=M.FAILED),
        "replied": Q(replied_at__isnull=False), "opted_out": Q(opted_out_at__isnull=False),
    }[status_name]


def recipients_of(campaign, status_name=None):
    rows = CampaignRecipient.objects.filter(campaign=campaign).select_related("message", "session").order_by("pk")
    return rows.filter(recipient_filter(status_name)) if status_name else rows


def recipient_payload(recipient):
    message = recipient.message
    return {
        "id": recipient.pk, "phone": recipient.phone, "name": recipient.name,
        "status": progress.recipient_status(recipient.status, message.status if message else None),
        "reason": recipient.reason or (message.failure_reason if message else ""),
        "session": recipient.session.name if recipient.session_id else None,
        "message_id": recipient.message_id, "text": recipient.text, "variation": recipient.variation,
        "cold": recipient.cold, "queued_at": _iso(recipient.queued_at),
        "sent_at": _iso(message.sent_at if message else None),
        "delivered_at": _iso(message.delivered_at if message else None),
        "read_at": _iso(message.read_at if message else None),
        "replied_at": _iso(recipient.replied_at), "opted_out_at": _iso(recipient.opted_out_at),
    }
