"""Alerts fire and resolve here (beat: alerts.tasks.check_alerts every minute), each change told once:

- to the platform admins, every alert, through the platform's channels: email to the platform admins, a signed
  webhook (WHATSAPP_ALERT_WEBHOOK) and Telegram (TELEGRAM_BOT_TOKEN to TELEGRAM_CHAT_IDS, at TELEGRAM_API_BASE);
- to the workspace an alert is about, when it chose that kind (AlertSettings.kinds), through the channels it chose
  (AlertSettings.channels): email to its owners and admins, its webhook endpoints subscribed to alert.firing /
  alert.resolved (stored, signed and retried like every webhook), the platform's Telegram bot to its chat ids.

update_alert_settings is a workspace's choice (owners and admins, audited)."""
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
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import Membership
from audit import actions as audit
from core import telegram
from core.errors import DomainError
from core.permissions import MANAGERS
from whatsapp.webhooks import actions as webhooks

from . import rules
from .errors import AlertError
from .models import MAX_TELEGRAM_CHATS, Alert, AlertSettings, Channel, Kind

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


def _platform_admins():
    return sorted(set(get_user_model().objects.filter(is_staff=True, is_active=True)
                      .values_list("email", flat=True)))


def _mail(text, alert, recipients, page):
    body = f"{text}\n\nStarted {alert.started_at:%Y-%m-%d %H:%M} UTC.\n{settings.SITE_URL}{page}"
    send_mail(text[:150], body, None, recipients)


def _email(alert, event, text):
    recipients = _platform_admins()
    if recipients:
        _mail(text, alert, recipients, reverse("platform_alerts"))
    return bool(recipients)


def webhook_signature(secret, timestamp, body):
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def payload(alert, event):
    """What a webhook is told (the platform's and the workspace's alike)."""
    return {"event": f"alert.{event}", "id": alert.pk, "key": alert.key, "rule": alert.rule,
            "summary": alert.summary, "tenant": alert.tenant.slug if alert.tenant_id else None,
            "details": alert.details, "started_at": alert.started_at.isoformat(),
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None}


def _webhook(alert, event, text):
    if not settings.WHATSAPP_ALERT_WEBHOOK:
        return None
    body = json.dumps(payload(alert, event)).encode()
    timestamp = str(int(time.time()))
    secret = settings.WHATSAPP_ALERT_WEBHOOK_SECRET or settings.SECRET_KEY
    response = httpx.post(settings.WHATSAPP_ALERT_WEBHOOK, content=body, timeout=TIMEOUT, headers={
        "Content-Type": "application/json", "X-Switchboard-Timestamp": timestamp,
        "X-Switchboard-Signature": webhook_signature(secret, timestamp, body)})
    response.raise_for_status()
    return True


def _telegram_to(chat_ids, text):
    for chat_id in chat_ids:
        telegram.send_message(chat_id, text, timeout=TIMEOUT)


def _telegram(alert, event, text):
    if not settings.TELEGRAM_BOT_TOKEN or not settings.TELEGRAM_CHAT_IDS:
        return None
    _telegram_to(settings.TELEGRAM_CHAT_IDS, text)
    return True


CHANNELS = {"email": _email, "webhook": _webhook, "telegram": _telegram}


# --- the workspace's own channels ---------------------------------------------------------------------------------


def _workspace_email(alert, event, text, chosen):
    platform = set(_platform_admins())  # told already, by the platform's email
    recipients = sorted(set(Membership.objects.filter(tenant_id=alert.tenant_id, role__in=MANAGERS,
                                                      user__is_active=True)
                            .values_list("user__email", flat=True)) - platform)
    if not recipients:
        return None
    _mail(text, alert, recipients, reverse("alerts"))
    return True


def _workspace_webhook(alert, event, text, chosen):
    """One delivery per endpoint of the workspace subscribed to alert.<event>, through its webhook pipeline."""
    with schema_context(alert.tenant.schema_name):
        deliveries = webhooks.emit_event(f"alert.{event}", payload(alert, event))
    if not deliveries:
        raise LookupError(f"no enabled webhook endpoint receives alert.{event}")
    return True


def _workspace_telegram(alert, event, text, chosen):
    if not settings.TELEGRAM_BOT_TOKEN:
        raise LookupError("the platform has no Telegram bot (TELEGRAM_BOT_TOKEN)")
    # A chat the platform is told in already hears it once.
    chats = [chat for chat in chosen.telegram_chat_ids if chat not in settings.TELEGRAM_CHAT_IDS]
    if not chats:
        return None
    _telegram_to(chats, text)
    return True


WORKSPACE_CHANNELS = {Channel.EMAIL: _workspace_email, Channel.WEBHOOK: _workspace_webhook,
                      Channel.TELEGRAM: _workspace_telegram}


def _tell(alert, event, audience, name, send):
    entry = {"at": timezone.now().isoformat(), "event": event, "channel": name, "to": audience}
    try:
        sent = send()
    except Exception as exc:  # one channel down must not silence the others
        log.warning("alert %s: %s (%s) failed", alert.key, name, audience, exc_info=True)
        return {**entry, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    if sent is None:
        return None
    return {**entry, "ok": bool(sent), "error": ""}


def notify(alert, event):
    """Tell the platform's channels and the channels the workspace chose, each once; what each answered is kept on
    the alert (`to`: platform or workspace)."""
    if not settings.WHATSAPP_ALERTING_ENABLED:
        return
    text = _text(alert, event)
    entries = [_tell(alert, event, "platform", name, lambda channel=channel: channel(alert, event, text))
               for name, channel in CHANNELS.items()]
    if alert.tenant_id:
        chosen = AlertSettings.of(alert.tenant)
        if alert.rule in chosen.kinds:
            entries += [_tell(alert, event, "workspace", name,
                              lambda channel=WORKSPACE_CHANNELS[name]: channel(alert, event, text, chosen))
                        for name in Channel.values if name in chosen.channels]
    alert.notifications = [*alert.notifications, *filter(None, entries)]
    Alert.objects.filter(pk=alert.pk).update(notifications=alert.notifications)


# --- a workspace's choice -----------------------------------------------------------------------------------------



def _snapshot(chosen):
    return {"channels": list(chosen.channels), "kinds": list(chosen.kinds),
            "telegram_chat_ids": list(chosen.telegram_chat_ids)}


def check_alert_settings(*, channels, kinds, telegram_chat_ids):
    """The choice as it will be kept (known values, in their canonical order, chat ids unique), or DomainError."""
    unknown = [c for c in channels if c not in Channel.values]
    if unknown:
        raise DomainError(AlertError.UNKNOWN_CHANNEL, f"Unknown channel '{unknown[0]}'.",
                          {"allowed": list(Channel.values)})
    unknown = [k for k in kinds if k not in Kind.values]
    if unknown:
        raise DomainError(AlertError.UNKNOWN_KIND, f"Unknown alert kind '{unknown[0]}'.",
                          {"allowed": list(Kind.values)})
    wrong = [chat for chat in telegram_chat_ids if not telegram.CHAT_ID_RE.fullmatch(chat)]
    if wrong:
        raise DomainError(AlertError.INVALID_CHAT_ID,
                          f"'{wrong[0][:40]}' is not a Telegram chat id: a number such as -1001234567890 (ask "
                          "@userinfobot or look at the bot's getUpdates) or a public channel's @name.",
                          {"telegram_chat_ids": wrong})
    if len(telegram_chat_ids) > MAX_TELEGRAM_CHATS:
        raise DomainError(AlertError.TOO_MANY_CHAT_IDS, f"At most {MAX_TELEGRAM_CHATS} Telegram chats.",
                          {"max": MAX_TELEGRAM_CHATS})
    chats = list(dict.fromkeys(telegram_chat_ids))
    if Channel.TELEGRAM in channels:
        if not settings.TELEGRAM_BOT_TOKEN:
            raise DomainError(AlertError.TELEGRAM_UNAVAILABLE,
                              "This platform has no Telegram bot set up: choose email or webhook instead.")
        if not chats:
            raise DomainError(AlertError.CHAT_IDS_REQUIRED, "Give at least one Telegram chat id to send alerts to.")
    return {"channels": [c for c in Channel.values if c in channels], "kinds": [k for k in Kind.values if k in kinds],
            "telegram_chat_ids": chats}


def update_alert_settings(tenant, *, acting_user, **changes):
    """Change any of channels, kinds, telegram_chat_ids (the others stay); audited as alerts.settings_updated with
    what changed. Returns the settings."""
    unknown = set(changes) - {"channels", "kinds", "telegram_chat_ids"}
    if unknown:
        raise ValueError(f"not alert settings: {sorted(unknown)}")
    with transaction.atomic():
        defaults = AlertSettings.of(tenant)
        AlertSettings.objects.get_or_create(tenant=tenant, defaults={
            "channels": defaults.channels, "kinds": defaults.kinds, "telegram_chat_ids": []})
        current = AlertSettings.objects.select_for_update().get(tenant=tenant)
        before = _snapshot(current)
        after = check_alert_settings(**{**before, **changes})
        if after != before:
            current.channels, current.kinds = after["channels"], after["kinds"]
            current.telegram_chat_ids = after["telegram_chat_ids"]
            current.updated_at = timezone.now()
            current.save()
            changed = [field for field in after if after[field] != before[field]]
            audit.record("alerts.settings_updated", actor=acting_user, target=current,
                         before={f: before[f] for f in changed}, after={f: after[f] for f in changed},
                         tenant=tenant)
    return current
