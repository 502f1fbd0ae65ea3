"""State changes of users, memberships and API keys."""
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from audit import actions as audit
from core.errors import CommonError, DomainError
from tenants import actions as tenant_actions
from tenants import notify as tenant_notify
from tenants.schemas import in_public_schema

from .errors import AccountError
from .models import ApiKey, Membership, hash_api_key


@transaction.atomic
def create_api_key(*, user, tenant, name):
    """Returns (api_key, raw_key). The raw key exists only in this return value."""
    name = (name or "").strip()
    if not name:
        raise DomainError(AccountError.NAME_REQUIRED, "Give the key a name so you can recognise it later.")
    if tenant is None and not user.is_platform_admin:
        raise DomainError(AccountError.TENANT_REQUIRED, "Only platform admins may hold keys without a tenant.")
    if tenant is not None and not user.memberships.filter(tenant=tenant).exists():
        raise DomainError(CommonError.NOT_FOUND, "No such tenant.")
    raw, prefix = ApiKey.generate()
    key = ApiKey.objects.create(user=user, tenant=tenant, name=name[:80], prefix=prefix, key_hash=hash_api_key(raw))
    audit.record("api_key.created", actor=user, target=key, after={"name": key.name, "prefix": prefix},
                 tenant=tenant)
    return key, raw


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
