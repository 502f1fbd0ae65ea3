"""State changes of users, memberships and API keys."""
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from core.errors import CommonError, DomainError

from . import audit
from .errors import AccountError
from .models import ApiKey, hash_api_key


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
