"""The tenant's sending policy: numbers it never sends to, and its pacing (whatsapp.messaging.recipients and
whatsapp.messaging.pacing read it)."""
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import actions as audit
from billing import entitlements
from core.errors import DomainError
from core.phones import normalize_phone

from . import pacing
from .errors import MessagingError
from .models import BlockedNumber, PacingPolicy


def block_number(tenant, *, acting_user, phone, reason=""):
    """Never send to `phone` (E.164, or digits with the country code) from this tenant. 400 invalid_phone,
    409 already_blocked."""
    # digits with the country code, as recipients are written in the API
    phone = normalize_phone(phone, code=MessagingError.INVALID_PHONE, digits_mean_international=True)
    entitlements.require_write(tenant)
    reason = str(reason or "").strip()[:255]
    with transaction.atomic():
        if BlockedNumber.objects.select_for_update().filter(phone=phone).exists():
            raise DomainError(MessagingError.ALREADY_BLOCKED, f"{phone} is already blocked.", {"phone": phone})
        try:
            with transaction.atomic():
                blocked = BlockedNumber.objects.create(phone=phone, reason=reason,
                                                       created_by=acting_user if getattr(acting_user, "pk", None)
                                                       else None)
        except IntegrityError:  # blocked by a concurrent request
            raise DomainError(MessagingError.ALREADY_BLOCKED, f"{phone} is already blocked.", {"phone": phone})
        audit.record("whatsapp.number_blocked", actor=acting_user, target=blocked,
                     after={"phone": phone, "reason": reason}, tenant=tenant)
    return blocked


def unblock_number(tenant, blocked, *, acting_user):
    entitlements.require_write(tenant)
    with transaction.atomic():
        audit.record("whatsapp.number_unblocked", actor=acting_user, target=blocked,
                     before={"phone": blocked.phone, "reason": blocked.reason}, tenant=tenant)
        blocked.delete()


def update_pacing_policy(tenant, *, acting_user, changes):
    """Change this tenant's pacing policy. `changes` holds any of enabled and pacing.FIELDS (None = the
    installation's default); 400 invalid_pacing for a value out of pacing.BOUNDS, nothing changed then."""
    unknown = sorted(set(changes) - {"enabled", *pacing.FIELDS})
    if unknown:
        raise DomainError(MessagingError.INVALID_PACING,
                          f"Unknown pacing field: {', '.join(unknown)}.", {"fields": unknown})
    if "enabled" in changes and not isinstance(changes["enabled"], bool):
        raise DomainError(MessagingError.INVALID_PACING, "enabled must be true or false.", {"field": "enabled"})
    for name in pacing.FIELDS:
        if name not in changes or changes[name] is None:
            continue
        low, high = pacing.BOUNDS[name]
        value = changes[name]
        if name == "min_interval_ms" and isinstance(value, int) and not isinstance(value, bool) and value < low:
            raise DomainError(MessagingError.INVALID_PACING, pacing.FLOOR_REASON,
                              {"field": name, "min": low, "max": high})
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise DomainError(MessagingError.INVALID_PACING,
                              f"{name} must be a whole number from {low} to {high}, or null "
                              "for the installation's default.", {"field": name, "min": low, "max": high})
    entitlements.require_write(tenant)
    with transaction.atomic():
        policy = PacingPolicy.objects.select_for_update().order_by("pk").first() or PacingPolicy()
        before = {"enabled": policy.enabled, **{name: getattr(policy, name) for name in pacing.FIELDS}}
        for name, value in changes.items():
            setattr(policy, name, value)
        policy.updated_at = timezone.now()
        policy.save()
        after = {"enabled": policy.enabled, **{name: getattr(policy, name) for name in pacing.FIELDS}}
        audit.record("whatsapp.pacing_updated", actor=acting_user, target=policy, before=before, after=after,
                     tenant=tenant)
    return policy
