"""Secrets, target checks, signing and one delivery attempt. Time always comes from `current_time(now)`, so tests
(and the sweeper) can pass a clock of their own."""
import base64
import json
import random
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from core import crypto
from core.errors import DomainError
from core.net import TargetError, check_target, resolve_target  # noqa: F401  (check_target: the forms' and API's)

from .models import WebhookDelivery, WebhookEndpoint

# Waits after the 1st, 2nd, … failed attempt; after the last one the delivery is dead-lettered.
RETRY_SCHEDULE = [timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
                  timedelta(hours=5), timedelta(hours=10), timedelta(hours=10)]
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
JITTER = 0.10
# A claimed delivery is due again this long after its claim if its worker died mid-attempt: a little over the
# longest attempt, so a lost task's deliveries are retried within a minute (the sweeper runs every 10 s).
CLAIM_MARGIN_SECONDS = 15
RESPONSE_EXCERPT_CHARS = 500
ERROR_CHARS = 500


def current_time(now=None):
    return now or timezone.now()


def claim_seconds():
    return settings.WEBHOOK_TIMEOUT_SECONDS + CLAIM_MARGIN_SECONDS


class SecretUnreadable(Exception):
    """The endpoint's stored secret no longer decrypts: the attempt fails with this message."""

    @property
    def message(self):
        return str(self)


# --- secrets --------------------------------------------------------------------------------------------------------


def new_secret():
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def encrypt_secret(secret):
    """The stored form of a signing secret (core.crypto's keyring; webhook and bot secrets alike)."""
    return crypto.encrypt_secret(secret)


def decrypt_secret(token):
    try:
        return crypto.decrypt_secret(token)
    except DomainError as exc:
        raise SecretUnreadable("The endpoint's secret cannot be decrypted: it was encrypted with a key that is no "
                               "longer in WHATSAPP_ENCRYPTION_KEY (or with SECRET_KEY before it changed). Put the "
                               "key back, or recreate the endpoint.") from exc


# --- signing and attempts -------------------------------------------------------------------------------------------


def new_webhook_id():
    return f"msg_{uuid.uuid4().hex}"


def body_of(delivery):
    return json.dumps(delivery.payload, cls=DjangoJSONEncoder, separators=(",", ":"))


def signed_headers(secret, webhook_id, body, at):
    at = at.replace(microsecond=0)
    return {
        "content-type": "application/json",
        "user-agent": "Switchboard-Webhooks/1",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
    }


def next_delay(failed_attempts):
    """Wait after the n-th failed attempt (1-based), with ±10 % jitter; None once the schedule is exhausted."""
    if failed_attempts > len(RETRY_SCHEDULE):
        return None
    base = RETRY_SCHEDULE[failed_attempts - 1].total_seconds()
    return timedelta(seconds=base * random.uniform(1 - JITTER, 1 + JITTER))


def _pinned(url, ip):
    """url with its host replaced by the checked address, and what the request needs to still be about the host:
    its Host header and, for https, the name for SNI and certificate verification."""
    parts = urlsplit(url)
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = f"{host}:{parts.port}" if parts.port else host
    host_header = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return parts._replace(netloc=netloc).geturl(), host_header, extensions


def _post(url, body, headers, addresses):
    """(status code or None, response excerpt, error, duration ms), connecting only to `addresses` (the checked
    ones, tried in order while the connection is refused). No redirects: only a 2xx from this URL counts."""
    started = time.monotonic()
    code, excerpt, error = None, "", ""
    try:
        with httpx.Client(timeout=settings.WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False) as client:
            for index, ip in enumerate(addresses):
                target, host_header, extensions = _pinned(url, ip)
                try:
                    response = client.post(target, content=body.encode(), headers={**headers, "host": host_header},
                                           extensions=extensions)
                    break
                except httpx.ConnectError:
                    if index == len(addresses) - 1:
                        raise
        code, excerpt = response.status_code, response.text[:RESPONSE_EXCERPT_CHARS]
        error = late_or_failed(code, time.monotonic() - started)
    except httpx.TimeoutException:
        error = f"Timed out after {settings.WEBHOOK_TIMEOUT_SECONDS:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return code, excerpt, error[:ERROR_CHARS], int((time.monotonic() - started) * 1000)


def late_or_failed(code, took):
    """The error of an answer: its status if not 2xx, or its lateness (httpx's timeout bounds each read, not the
    whole exchange: a slow trickle is still too late); "" for a good answer."""
    if not 200 <= code < 300:
        return f"HTTP {code}"
    if took > settings.WEBHOOK_TIMEOUT_SECONDS:
        return f"Answered after {took:.1f} s, over the {settings.WEBHOOK_TIMEOUT_SECONDS:g} s limit"
    return ""


@dataclass(frozen=True)
class Outcome:
    status: str
    next_attempt_at: object
    succeeded_at: object
    error: str
    disable: bool = False  # the endpoint answered 410 Gone


def outcome(attempt_number, code, error, now):
    """What follows the `attempt_number`-th attempt (1-based) that answered `code` with `error`."""
    S = WebhookDelivery.Status
    if code is not None and 200 <= code < 300 and not error:
        return Outcome(S.SUCCEEDED, None, now, error)
    if code == 410:
        return Outcome(S.DEAD, None, None, "HTTP 410 Gone: the endpoint was disabled", disable=True)
    delay = next_delay(attempt_number)
    if delay is None:
        return Outcome(S.DEAD, None, None, error)
    return Outcome(S.FAILED, now + delay, None, error)


def disable_gone(endpoint_id, now):
    """The endpoint answered 410 Gone: disabled, with why."""
    WebhookEndpoint.objects.filter(pk=endpoint_id, enabled=True).update(
        enabled=False, disabled_at=now,
        disabled_reason=f"The endpoint answered 410 Gone on {now:%Y-%m-%d %H:%M:%S} UTC.")


def claim(delivery_id, *, now=None, lease=None):
    """Take the delivery for one attempt: lock it, check it is still ours to try, and move next_attempt_at out by
    CLAIM_SECONDS so that a sweep finds it again only if this attempt dies. `lease` is the next_attempt_at a
    sweeper set when it claimed the row (its task then owns it); without one the delivery must be due."""

    S = WebhookDelivery.Status
    now = current_time(now)
    with transaction.atomic():
        delivery = (WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("endpoint").filter(pk=delivery_id, status__in=[S.PENDING, S.FAILED]).first())
        if delivery is None or not delivery.endpoint.enabled or delivery.next_attempt_at is None:
            return None
        if lease is not None and delivery.next_attempt_at != lease:
            return None
        if lease is None and delivery.next_attempt_at > now:
            return None
        if lease is None:
            delivery.next_attempt_at = now + timedelta(seconds=claim_seconds())
            delivery.save(update_fields=["next_attempt_at"])
    return delivery


def attempt(delivery, *, now=None):
    """POST the delivery once, record the attempt and decide what happens next. Returns the delivery."""
    now = current_time(now)
    endpoint = delivery.endpoint
    body = body_of(delivery)
    try:
        addresses = resolve_target(endpoint.url)
        # Signed with the wall clock, not `now`: the webhook-timestamp is when these bytes go out (receivers
        # refuse ones more than 5 minutes off), while `now` decides the schedule.
        headers = signed_headers(decrypt_secret(endpoint.secret_encrypted), delivery.webhook_id, body,
                                 timezone.now())
    except (TargetError, SecretUnreadable) as exc:
        code, excerpt, error, duration = None, "", exc.message, 0
    else:
        code, excerpt, error, duration = _post(endpoint.url, body, headers, addresses)

    delivery.attempts += 1
    result = outcome(delivery.attempts, code, error, now)
    delivery.last_status_code, delivery.last_error, delivery.last_duration_ms = code, result.error, duration
    delivery.attempt_log = [*delivery.attempt_log, {"at": now, "status_code": code, "duration_ms": duration,
                                                    "error": result.error, "response": excerpt}]
    delivery.status, delivery.next_attempt_at = result.status, result.next_attempt_at
    if result.succeeded_at is not None:
        delivery.succeeded_at = result.succeeded_at
    with transaction.atomic():
        delivery.save(update_fields=["attempts", "last_status_code", "last_error", "last_duration_ms",
                                     "attempt_log", "status", "next_attempt_at", "succeeded_at"])
        if result.disable:
            disable_gone(endpoint.pk, now)
    return delivery
