import hashlib
import secrets

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone

from core import permissions
from core.permissions import ALL_SCOPES, Role, Scope


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email, password=None, **extra):
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Lives in the public schema; belongs to tenants through memberships."""

    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=120, blank=True)
    phone = models.CharField(max_length=20, blank=True, help_text="E.164")
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="Platform admin: approves tenants, sees every tenant")
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()
    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = []

    def __str__(self):
        return self.email

    @property
    def is_platform_admin(self):
        return self.is_active and self.is_staff

    def get_full_name(self):
        return self.full_name or self.email

    def get_short_name(self):
        return (self.full_name or self.email).split(" ")[0]


class Membership(models.Model):
    Role = Role

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.AGENT)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_user_tenant_unique")]
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.user} {self.role} of {self.tenant}"

    @property
    def can_manage(self):
        return permissions.can_manage(self.role)


API_KEY_PREFIX_LEN = 8


def hash_api_key(raw_key: str) -> str:
    # Keys carry 240 bits of randomness, so a plain SHA-256 is enough: nothing to brute-force.
    return hashlib.sha256(raw_key.encode()).hexdigest()


def all_scopes():
    """Every scope: a key made without choosing (and every key made before scopes existed) may do all its user's
    role allows."""
    return list(ALL_SCOPES)


MAX_ROTATION_OVERLAP_HOURS = 168


class ApiKeyQuerySet(models.QuerySet):
    def active(self):
        """Keys that still open the API: not revoked and not expired (a rotated key until its overlap ends)."""
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=timezone.now()))


class ApiKey(models.Model):
    """A personal API key for one user in one tenant. Only the hash is stored; the key is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    # Null only for platform admins' keys, which act on the platform API and never on a tenant's data.
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=16, unique=True, help_text="Visible start of the key, e.g. sb_1a2b3c4d")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    scopes = ArrayField(models.CharField(max_length=20, choices=Scope.choices), default=all_scopes,
                        help_text="What the key may be used for, within its user's role (core.permissions.SCOPES)")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="After this the key answers 401")
    # Set when the key was rotated: the new key, while this one keeps working until expires_at (the overlap).
    replaced_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def generate():
        """Returns (raw_key, prefix). Format: sb_<8 hex>_<40 urlsafe chars>."""
        prefix = f"sb_{secrets.token_hex(API_KEY_PREFIX_LEN // 2)}"
        return f"{prefix}_{secrets.token_urlsafe(30)}", prefix

    @property
    def is_revoked(self):
        return self.revoked_at is not None

    @property
    def is_expired(self):
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def status(self):
        """revoked, expired, rotated (the old key of a rotation, in its overlap) or active."""
        if self.is_revoked:
            return "revoked"
        if self.is_expired:
            return "expired"
        if self.replaced_by_id is not None:
            return "rotated"
        return "active"


INVITATION_DAYS = 7


def hash_invitation_token(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


class InvitationQuerySet(models.QuerySet):
    def pending(self):
        """Neither accepted nor revoked, and not expired: these hold a seat of the plan's member limit."""
        return self.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())


class Invitation(models.Model):
    """An invitation by email to join a workspace with a role. The link carries a token of which only the hash is
    stored; it is valid INVITATION_DAYS days, may be sent again (a new token, a new week) or revoked."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.email} as {self.role} of {self.tenant}"

    @staticmethod
    def generate_token():
        return secrets.token_urlsafe(32)

    @property
    def status(self):
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"


def two_factor_users(user_ids):
    """The ids among `user_ids` of users with a second factor (TOTP or a passkey), in one query."""
    # allauth.mfa's models load after this module (INSTALLED_APPS order): imported when called.
    from allauth.mfa.models import Authenticator

    return set(Authenticator.objects.filter(user_id__in=list(user_ids)).exclude(
        type=Authenticator.Type.RECOVERY_CODES).values_list("user_id", flat=True))


class KnownDevice(models.Model):
    """A browser a user signed in from: its family and OS with the network it came from (an IPv4 /24, an IPv6 /48),
    hashed. A sign-in from one not seen before is told by email (accounts.devices)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="known_devices")
    fingerprint = models.CharField(max_length=64)
    browser = models.CharField(max_length=120, help_text='e.g. "Firefox on Ubuntu"')
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "fingerprint"], name="known_device_once_per_user")]

    def __str__(self):
        return f"{self.browser} of {self.user}"
