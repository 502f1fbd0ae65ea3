"""State changes of users, memberships and API keys."""
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from audit import actions as audit
from core.errors import CommonError, DomainError
from core.tasks import send_email
from tenants import actions as tenant_actions
from tenants import notify as tenant_notify
from tenants.schemas import in_public_schema

from core.permissions import ALL_SCOPES

from .errors import AccountError, ApiKeyError
from .models import MAX_ROTATION_OVERLAP_HOURS, ApiKey, Membership, hash_api_key


def check_scopes(scopes):
    """The scopes as stored (known ones, each once, in ALL_SCOPES order); None means all of them."""
    if scopes is None:
        return list(ALL_SCOPES)
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise DomainError(ApiKeyError.INVALID_SCOPE, f"Unknown scope {unknown[0]!r}; the scopes are "
                                                     f"{', '.join(ALL_SCOPES)}.", {"scopes": list(ALL_SCOPES)})
    if not scopes:
        raise DomainError(ApiKeyError.INVALID_SCOPE, "Choose at least one scope; a key without any opens nothing.",
                          {"scopes": list(ALL_SCOPES)})
    return [scope for scope in ALL_SCOPES if scope in scopes]


def check_expiry(expires_at):
    if expires_at is not None and expires_at <= timezone.now():
        raise DomainError(ApiKeyError.INVALID_EXPIRY, "The expiry is in the past; choose a later time, or none.")
    return expires_at


def _key_facts(key):
    return {"name": key.name, "prefix": key.prefix, "scopes": list(key.scopes),
            "expires_at": key.expires_at.isoformat() if key.expires_at else None}


def _new_key(*, user, tenant, name, scopes, expires_at):
    raw, prefix = ApiKey.generate()
    key = ApiKey.objects.create(user=user, tenant=tenant, name=name[:80], prefix=prefix, key_hash=hash_api_key(raw),
                                scopes=scopes, expires_at=expires_at)
    _tell_the_holder(key)
    return key, raw


def _tell_the_holder(key):
    """A security email: a key made in your name that you did not make is the sign of a stolen session."""
    expires = f"{key.expires_at:%d %b %Y %H:%M} UTC" if key.expires_at else "never"
    body = (f"A new API key was created for your account on {settings.SITE_NAME}.\n\n"
            f"Name: {key.name}\nPrefix: {key.prefix}\n"
            f"Workspace: {key.tenant.name if key.tenant else 'the platform API'}\n"
            f"Scopes: {', '.join(key.scopes)}\nExpires: {expires}\n\n"
            "If you did not create it, revoke it at once on the API keys page and change your password:\n"
            f"{settings.SITE_URL}{reverse('api_keys')}\n")
    to, subject = key.user.email, f"[{settings.SITE_NAME}] New API key {key.prefix}"
    transaction.on_commit(lambda: send_email.delay(to=to, subject=subject, body=body))


@transaction.atomic
def create_api_key(*, user, tenant, name, scopes=None, expires_at=None):
    """Returns (api_key, raw_key). The raw key exists only in this return value. Without scopes the key may do all
    its user's role allows; with expires_at it answers 401 api_key_expired from then on."""
    name = (name or "").strip()
    if not name:
        raise DomainError(AccountError.NAME_REQUIRED, "Give the key a name so you can recognise it later.")
    scopes = check_scopes(scopes)
    check_expiry(expires_at)
    if tenant is None and not user.is_platform_admin:
        raise DomainError(AccountError.TENANT_REQUIRED, "Only platform admins may hold keys without a tenant.")
    if tenant is not None and not user.memberships.filter(tenant=tenant).exists():
        raise DomainError(CommonError.NOT_FOUND, "No such tenant.")
    key, raw = _new_key(user=user, tenant=tenant, name=name, scopes=scopes, expires_at=expires_at)
    audit.record("api_key.created", actor=user, target=key, after=_key_facts(key), tenant=tenant)
    return key, raw


@transaction.atomic
def rotate_api_key(key, *, acting_user, overlap_hours):
    """Returns (new_key, raw_key): a new secret with the key's name, scopes and expiry, while the old key keeps
    working for `overlap_hours` (0: it stops now), time for the software using it to switch."""
    if not isinstance(overlap_hours, int) or not 0 <= overlap_hours <= MAX_ROTATION_OVERLAP_HOURS:
        raise DomainError(ApiKeyError.INVALID_OVERLAP,
                          f"The overlap is a whole number of hours from 0 to {MAX_ROTATION_OVERLAP_HOURS}.")
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.status != "active":
        raise DomainError(ApiKeyError.API_KEY_NOT_ACTIVE,
                          f"This key is {key.status}; only an active key can be rotated. Make a new key instead.",
                          {"status": key.status})
    now = timezone.now()
    new_key, raw = _new_key(user=key.user, tenant=key.tenant, name=key.name, scopes=list(key.scopes),
                            expires_at=key.expires_at)
    before = _key_facts(key)
    overlap_end = now + timedelta(hours=overlap_hours)
    key.expires_at = min(key.expires_at, overlap_end) if key.expires_at else overlap_end
    key.replaced_by = new_key
    key.save(update_fields=["expires_at", "replaced_by"])
    audit.record("api_key.created", actor=acting_user, target=new_key,
                 after={**_key_facts(new_key), "rotated_from": key.prefix}, tenant=key.tenant)
    audit.record("api_key.rotated", actor=acting_user, target=key, before=before,
                 after={**_key_facts(key), "replaced_by": new_key.prefix, "overlap_hours": overlap_hours},
                 tenant=key.tenant)
    return new_key, raw


@transaction.atomic
def revoke_api_key(key, *, acting_user):
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit.record("api_key.revoked", actor=acting_user, target=key, before={"revoked": False},
                     after={"revoked": True, "prefix": key.prefix}, tenant=key.tenant)
    return key


@transaction.atomic
def ensure_platform_admin(email=None, password=None):
    """Create the first platform admin once. Returns (user, password or None if it already existed)."""
    from allauth.account.models import EmailAddress

    User = get_user_model()
    email = (email or settings.SWITCHBOARD_ADMIN_EMAIL).lower()
    if User.objects.filter(is_staff=True).exists():
        return User.objects.filter(is_staff=True).order_by("id").first(), None
    password = password or settings.SWITCHBOARD_ADMIN_PASSWORD or secrets.token_urlsafe(12)
    user = User.objects.create_superuser(email=email, password=password, full_name="Platform admin")
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    audit.record("user.platform_admin_created", actor=None, target=user, after={"email": email})
    return user, password


@in_public_schema
@transaction.atomic
def register_business(*, user, business_name, plan, phone="", slug=None, acting_user=None):
    """A sign-up: a pending tenant with `user` as its owner. The schema comes at approval."""
    tenant = tenant_actions.create_pending_tenant(business_name=business_name, plan=plan, phone=phone, slug=slug,
                                                  acting_user=acting_user or user)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.OWNER)
    return tenant


@in_public_schema
def create_tenant(*, acting_user, name, plan, owner_email, owner_name="", slug=None):
    """A platform admin opens a tenant directly: it is registered and approved in one step."""
    User = get_user_model()
    with transaction.atomic():
        owner = User.objects.filter(email__iexact=owner_email).first()
        invite = owner is None
        if invite:
            owner = User.objects.create_user(email=owner_email, password=None, full_name=owner_name)
        tenant = register_business(user=owner, business_name=name, plan=plan, slug=slug,
                                   acting_user=acting_user)
        tenant = tenant_actions.approve_tenant(tenant, acting_user=acting_user)
        if invite:
            transaction.on_commit(lambda: tenant_notify.owner_invited(owner, tenant))
    return tenant
