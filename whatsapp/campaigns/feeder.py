"""Feeding campaigns into the sending pipeline: rows, not a loop in memory.

Every FEED_SECONDS (beat: whatsapp.campaigns.tasks.feed_campaigns), in each active tenant's schema, each running
campaign hands each of its numbers the next recipient whose turn has come: the number's CampaignSender.next_send_at
has passed (then it moves on by a random min..max gap), it has fewer than WINDOW of the campaign's messages still in
its queue, it is under the campaign's daily cap (the workspace's day), and a cold contact (one who never wrote first)
only while under the cold cap. Outside quiet hours only. The recipient goes through whatsapp.messaging's
queue_message with the Idempotency-Key campaign-<campaign>-<recipient>, in the same transaction as the recipient's
row: a feeder killed anywhere either queued it and recorded it, or did neither, and a retry finds the same message.
What happens to the message then (pacing, the host, receipts) is the pipeline's.

Safety stops pause the campaign (a campaign.paused webhook with the reason): a number logged out (WhatsApp's
temporary ban looks so), most of a number's last messages failing, or opt-outs among the replies above a share.
"""
import logging
import random
import time
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone
from django_tenants.utils import schema_context

from core.errors import DomainError
from tenants.models import Tenant
from whatsapp.messaging import actions as messaging
from whatsapp.messaging import recipients as messaging_recipients
from whatsapp.messaging.models import BlockedNumber, Message
from whatsapp.sessions.models import WhatsAppSession

from . import actions, planning, progress
from .models import Campaign, CampaignRecipient, CampaignSender, OptOut

log = logging.getLogger(__name__)
C, R, M = Campaign.Status, CampaignRecipient.Status, Message.Status
# Live figures of a running campaign go to its pages at most this often (each change of state at once).
PUSH_SECONDS = 1.0
_pushed = {}
WINDOW = 2  # a number's campaign messages in its queue at once: a pause holds back all but these
PICKS = 20  # recipients looked at per number and round (skipping opted-out ones)
FAILURE_SAMPLE, FAILURE_SHARE = 20, 0.5
OPT_OUT_MIN, OPT_OUT_SHARE = 5, 0.05
# Errors of queue_message that mean "not now" (the recipient stays pending): rate limits, the tenant unpaid, the
# number dropped for a moment.
NOT_NOW = {"rate_limited", "payment_required", "session_not_connected", "plan_limit_reached"}

_random = random.SystemRandom()


def feed_schema(tenant, now=None):
    """One round over this schema's campaigns: scheduled ones whose time came start, running ones are fed.
    Returns how many messages were queued."""
    now = now or timezone.now()
    queued = 0
    for campaign in Campaign.objects.filter(status=C.SCHEDULED, start_at__lte=now):
        with transaction.atomic():
            locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
            if locked.status == C.SCHEDULED:
                locked.status, locked.started_at = C.RUNNING, now
                locked.save(update_fields=["status", "started_at"])
                actions.emit_event("campaign.started", actions.campaign_payload(locked))
    for campaign in Campaign.objects.filter(status=C.RUNNING).select_related("template").order_by("pk"):
        queued += feed_campaign(campaign, tenant, now)
    return queued


def feed_campaign(campaign, tenant, now):
    tz = planning.timezone_of(tenant)
    queued = 0
    if not planning.in_quiet_hours(campaign, now, tz):
        for sender in CampaignSender.objects.filter(campaign=campaign).select_related("session").order_by("pk"):
            stop = _safety_stop(campaign, sender.session)
            if stop:
                _pause(tenant, campaign, stop)
                return queued
            try:
                queued += _feed_sender(campaign, sender, tenant, now, tz)
            except _NotNow:
                break
        stop = _overall_stop(campaign)
        if stop:
            _pause(tenant, campaign, stop)
            return queued
    _finish_or_report(campaign, tenant, now)
    return queued


def _pause(tenant, campaign, reason):
    try:
        actions.pause_campaign(tenant, campaign, reason=reason)
    except DomainError:  # paused or cancelled by a person meanwhile: nothing to stop
        pass


class _NotNow(Exception):
    pass


def _feed_sender(campaign, sender, tenant, now, tz):
    session = sender.session
    if session.status != WhatsAppSession.Status.CONNECTED:
        return 0
    if sender.next_send_at is not None and sender.next_send_at > now:
        return 0
    in_queue = CampaignRecipient.objects.filter(campaign=campaign, session=session, status=R.QUEUED,
                                                message__status__in=[M.QUEUED, M.SENDING]).count()
    if in_queue >= WINDOW:
        return 0
    day = now.astimezone(tz).date()
    if sender.day != day:
        sender.day, sender.sent_on_day, sender.cold_on_day = day, 0, 0
    if sender.sent_on_day >= campaign.daily_cap:
        sender.save(update_fields=["day", "sent_on_day", "cold_on_day"])
        return 0
    cold_allowed = sender.cold_on_day < campaign.cold_daily_cap
    with transaction.atomic():
        turn = (CampaignRecipient.objects.select_for_update(skip_locked=True)
                .filter(campaign=campaign, status=R.PENDING).order_by("pk"))
        if not cold_allowed:
            turn = turn.filter(cold=False)
        for recipient in turn[:PICKS]:
            why = _not_to(recipient.phone)
            if why:
                recipient.status, recipient.reason = R.SKIPPED, why
                recipient.save(update_fields=["status", "reason"])
                continue
            try:
                with transaction.atomic():
                    message, _ = messaging.queue_message(tenant, body=_body(campaign, session, recipient),
                                                         idempotency_key=f"campaign-{campaign.pk}-{recipient.pk}")
            except DomainError as exc:
                if exc.code.value in NOT_NOW:
                    raise _NotNow() from exc
                recipient.status, recipient.reason = R.FAILED, f"{exc.code.value}: {exc.message}"[:500]
                recipient.session = session
                recipient.save(update_fields=["status", "reason", "session"])
                continue
            recipient.status, recipient.message, recipient.session, recipient.queued_at = (
                R.QUEUED, message, session, now)
            recipient.save(update_fields=["status", "message", "session", "queued_at"])
            sender.sent_on_day += 1
            sender.cold_on_day += 1 if recipient.cold else 0
            gap = _random.uniform(campaign.min_gap_seconds, campaign.max_gap_seconds)
            sender.next_send_at = now + timedelta(seconds=gap)
            sender.save(update_fields=["day", "sent_on_day", "cold_on_day", "next_send_at"])
            return 1
        sender.save(update_fields=["day", "sent_on_day", "cold_on_day"])
    return 0


def _not_to(phone):
    """Why `phone` gets nothing now (opted out or blocked since the campaign was planned), or ""."""
    if OptOut.objects.filter(phone=phone).exists():
        return "opted_out: the contact opted out"
    if BlockedNumber.objects.filter(phone=phone).exists() or phone in messaging_recipients.blocked_numbers():
        return "blocked: the number is blocked"
    return ""


def _body(campaign, session, recipient):
    template = campaign.template
    if template.media_type:
        return {"session": session.name, "to": recipient.phone, "type": template.media_type,
                "media_url": template.media_url, "caption": recipient.text}
    return {"session": session.name, "to": recipient.phone, "text": recipient.text}


def _safety_stop(campaign, session):
    if session.status == WhatsAppSession.Status.LOGGED_OUT:
        return (f"safety stop: {session.name} was logged out by WhatsApp (a temporary ban looks so); check the "
                "phone before resuming")
    last = list(CampaignRecipient.objects.filter(
        campaign=campaign, session=session, message__status__in=[M.SENT, M.DELIVERED, M.READ, M.FAILED])
        .order_by("-pk").values_list("message__status", flat=True)[:FAILURE_SAMPLE])
    failed = sum(1 for s in last if s == M.FAILED)
    if len(last) >= FAILURE_SAMPLE // 2 and failed >= FAILURE_SHARE * len(last):
        return f"safety stop: {failed} of the last {len(last)} messages from {session.name} failed"
    return ""


def _overall_stop(campaign):
    handed = CampaignRecipient.objects.filter(campaign=campaign, status=R.QUEUED)
    opted = handed.filter(opted_out_at__isnull=False).count()
    if opted >= OPT_OUT_MIN and opted >= OPT_OUT_SHARE * handed.count():
        return f"safety stop: {opted} recipients opted out, over {int(OPT_OUT_SHARE * 100)}% of those messaged"
    return ""


def _finish_or_report(campaign, tenant, now):
    """campaign.progress every progress_every recipients done, finished once none is pending or in a queue, and the
    figures to the open pages (at most every PUSH_SECONDS, and on every change of state)."""
    handed = Q(status=R.QUEUED)
    tally = CampaignRecipient.objects.filter(campaign=campaign).aggregate(
        pending=Count("pk", filter=Q(status=R.PENDING)),
        in_queue=Count("pk", filter=handed & (Q(message__status__in=[M.QUEUED, M.SENDING]))),
        done=Count("pk", filter=Q(status=R.FAILED) | (handed & Q(message__status__in=[
            M.SENT, M.DELIVERED, M.READ, M.FAILED]))))
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.status != C.RUNNING:
            return
        done, changed = tally["done"], False
        if locked.progress_every and done >= locked.progress_notified + locked.progress_every:
            locked.progress_notified = done - done % locked.progress_every
            locked.save(update_fields=["progress_notified"])
            actions.emit_event("campaign.progress", {**actions.campaign_payload(locked),
                                                     "counts": progress.progress(locked, tenant, now)["counts"]})
        if tally["pending"] == 0 and tally["in_queue"] == 0:
            figures = progress.progress(locked, tenant, now)
            locked.status, locked.finished_at = C.FINISHED, now
            locked.save(update_fields=["status", "finished_at"])
            actions.audit.record("campaigns.campaign_finished", actor=None, target=locked,
                                 after={"counts": figures["counts"]}, tenant=tenant)
            actions.emit_event("campaign.finished", {**actions.campaign_payload(locked), "counts": figures["counts"]})
            changed = True
        key = (connection.schema_name, locked.pk)
        if changed or time.monotonic() - _pushed.get(key, 0) >= PUSH_SECONDS:
            _pushed[key] = time.monotonic()
            progress.push(locked, tenant)


def feed_all(now=None):
    """Every active tenant's schema (the beat task)."""
    total = 0
    for tenant in Tenant.objects.filter(status=Tenant.Status.ACTIVE):
        with schema_context(tenant.schema_name):
            if not Campaign.objects.filter(status__in=[C.RUNNING, C.SCHEDULED]).exists():
                continue
            try:
                total += feed_schema(tenant, now)
            except Exception:  # one tenant's trouble never stops the others' campaigns
                log.exception("feeding the campaigns of %s failed", tenant.schema_name)
    return total
