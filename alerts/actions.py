"""Alerts fire and resolve here (beat: alerts.tasks.check_alerts every minute), each change told once through every
channel configured: email (platform admins; a tenant's owners too for its own alerts), a signed webhook
(WHATSAPP_ALERT_WEBHOOK) and Telegram (TELEGRAM_BOT_TOKEN to TELEGRAM_CHAT_IDS, at TELEGRAM_API_BASE)."""
import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Membership
from core.permissions import Role

from . import rules
from .models import Alert

log = logging.getLogger(__name__)
TIMEOUT = 10
CHECK_LOCK = 0x616C657274  # pg_advisory_xact_lock key of check(): 'alert'


def check(now=None):
    """Fire what holds and is not firing, resolve what fires and no longer holds; returns (fired, resolved)."""
    now = now or timezone.now()
    holding = rules.incidents(now)
    fired, resolved = [], []
    with transaction.atomic():
        # One check at a time (beat's, and those an app asks for when something fails): two would both create
        # the incident that began between them, and the second would break the one-firing-per-key constraint.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHECK_LOCK])
        firing = {alert.key: alert for alert in Alert.objects.select_for_update().filter(state=Alert.State.FIRING)}
        for key, incident in holding.items():
            if key in firing:
                continue
            recent = (Alert.objects.filter(key=key, state=Alert.State.RESOLVED,
                                           resolved_at__gte=now - timedelta(minutes=settings.ALERT_COOLDOWN_MINUTES))
                      .order_by("-resolved_at").first())
            if recent is not None:  # flapping: the same incident goes on, nobody is told twice
                recent.state, recent.resolved_at = Alert.State.FIRING, None
                recent.summary, recent.details = incident.summary, incident.details
                recent.save(update_fields=["state", "resolved_at", "summary", "details"])
                continue
            fired.append(Alert.objects.create(key=key, rule=incident.rule, tenant_id=incident.tenant_id,
                                              summary=incident.summary, details=incident.details, started_at=now))
        for key, alert in firing.items():
            if key not in holding:
                alert.state, alert.resolved_at = Alert.State.RESOLVED, now
                alert.save(update_fields=["state", "resolved_at"])
                resolved.append(alert)
    for alert in fired:
        notify(alert, "firing")
    for alert in resolved:
        notify(alert, "resolved")
    return fired, resolved


def _text(alert, event):
    whose = f" ({alert.tenant.name})" if alert.tenant_id else ""
    if event == "firing":
        return f"[{settings.SITE_NAME}] ALERT{whose}: {alert.summary}"
    return f"[{settings.SITE_NAME}] RESOLVED{whose}: {alert.summary}"


def _email(alert, event, text):
    admins = list(get_user_model().objects.filter(is_staff=True, is_active=True).values_list("email", flat=True))
    owners = list(Membership.objects.filter(tenant_id=alert.tenant_id, role=Role.OWNER)
                  .values_list("user__email", flat=True)) if alert.tenant_id else []
    recipients = sorted(set(admins + owners))
    if recipients:
        body = f"{text}\n\nStarted {alert.started_at:%Y-%m-%d %H:%M} UTC.\n{settings.SITE_URL}/platform/alerts/"
        send_mail(text[:150], body, None, recipients)
    return bool(recipients)


def webhook_signature(secret, timestamp, body):
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _webhook(alert, event, text):
    if not settings.WHATSAPP_ALERT_WEBHOOK:
        return None
    body = json.dumps({"event": f"alert.{event}", "key": alert.key, "rule": alert.rule, "summary": alert.summary,
                       "tenant": alert.tenant.slug if alert.tenant_id else None, "details": alert.details,
                       "started_at": alert.started_at.isoformat(),
                       "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None}).encode()
    timestamp = str(int(time.time()))
    secret = settings.WHATSAPP_ALERT_WEBHOOK_SECRET or settings.SECRET_KEY
    response = httpx.post(settings.WHATSAPP_ALERT_WEBHOOK, content=body, timeout=TIMEOUT, headers={
        "Content-Type": "application/json", "X-Switchboard-Timestamp": timestamp,
        "X-Switchboard-Signature": webhook_signature(secret, timestamp, body)})
    response.raise_for_status()
    return True


def _telegram(alert, event, text):
    if not settings.TELEGRAM_BOT_TOKEN or not settings.TELEGRAM_CHAT_IDS:
        return None
    for chat_id in settings.TELEGRAM_CHAT_IDS:
        response = httpx.post(f"{settings.TELEGRAM_API_BASE.rstrip('/')}/bot{settings.TELEGRAM_BOT_TOKEN}/sendMessage",
                              json={"chat_id": chat_id, "text": text}, timeout=TIMEOUT)
        response.raise_for_status()
    return True


CHANNELS = {"email": _email, "webhook": _webhook, "telegram": _telegram}


def notify(alert, event):
    """Tell every configured channel once; what each answered is kept on the alert."""
    if not settings.WHATSAPP_ALERTING_ENABLED:
        return
    text = _text(alert, event)
    for name, channel in CHANNELS.items():
        entry = {"at": timezone.now().isoformat(), "event": event, "channel": name}
        try:
            sent = channel(alert, event, text)
        except Exception as exc:  # one channel down must not silence the others
            log.warning("alert %s: %s failed", alert.key, name, exc_info=True)
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
        else:
            if sent is None:
                continue
            entry.update(ok=bool(sent), error="")
        alert.notifications = [*alert.notifications, entry]
    Alert.objects.filter(pk=alert.pk).update(notifications=alert.notifications)
