"""State changes of tenants. One transaction each; emails, tasks and live updates go out on commit."""
import zoneinfo

from allauth.mfa.utils import is_mfa_enabled
from celery import shared_task
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from audit import actions as audit
from core.api import has_visible_text
from core.errors import DomainError
from core.net import check_target

from . import notify, pool, signals
from .errors import TenantError
from .models import LOCALES, Domain, Plan, Tenant
from .schemas import in_public_schema

RESERVED_SLUGS = {"www", "api", "admin", "static", "media", "ws", "app", "mail", "status", "health"}


class TenantStateError(DomainError):
    def __init__(self, tenant, action):
        super().__init__(TenantError.INVALID_TENANT_STATE,
                         f"Cannot {action} a tenant that is {tenant.get_status_display().lower()}.",
                         {"status": tenant.status})


def snapshot(tenant):
    return {
        "status": tenant.status,
        "plan": tenant.plan.code if tenant.plan_id else None,
        "name": tenant.name,
        "trial_ends_at": tenant.trial_ends_at.isoformat() if tenant.trial_ends_at else None,
    }


def slug_for(name):
    slug = slugify(name)[:63]
    if not slug:
        raise DomainError(TenantError.INVALID_NAME, "Use letters or digits in the business name.")
    if slug in RESERVED_SLUGS:
        raise DomainError(TenantError.RESERVED_SLUG, f"'{slug}' is reserved; choose another name or slug.")
    if Tenant.objects.filter(slug=slug).exists():
        raise DomainError(TenantError.SLUG_TAKEN, f"A business with the slug '{slug}' is already registered.")
    return slug


@in_public_schema
@transaction.atomic
def create_pending_tenant(*, business_name, plan, phone="", slug=None, acting_user=None):
    """A pending tenant (no schema until approval). A sign-up calls this through accounts.actions.register_business,
    which makes the user its owner in the same transaction."""
    tenant = Tenant.objects.create(
        name=business_name,
        slug=slug_for(slug or business_name),
        schema_name=Tenant.placeholder_schema_name(),
        status=Tenant.Status.PENDING,
        plan=plan,
        contact_phone=phone,
    )
    audit.record("tenant.registered", actor=acting_user, target=tenant, after=snapshot(tenant), tenant=tenant)
    _announce(tenant, "registered")
    return tenant


def _activate(tenant, now):
    tenant.status = Tenant.Status.ACTIVE
    tenant.provisioning_error = ""
    tenant.provisioning_progress = 100
    Domain.objects.get_or_create(tenant=tenant, domain=tenant.subdomain, defaults={"is_primary": True})


@in_public_schema
def approve_tenant(tenant, *, acting_user, plan=None):
    """Give a pending tenant a schema and start its trial.

    With a pooled schema this is one short transaction and the tenant is active when it returns. With an
    empty pool the tenant turns `provisioning` and a background task creates its schema, showing progress.
    """
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if tenant.status != Tenant.Status.PENDING:
            raise TenantStateError(tenant, "approve")
        before = snapshot(tenant)
        now = timezone.now()
        if plan is not None:
            tenant.plan = plan
        tenant.approved_at = now
        tenant.start_trial(now)
        signals.tenant_approved.send(sender=Tenant, tenant=tenant)
        pooled_schema = pool.take_pooled_schema()
        if pooled_schema:
            tenant.schema_name = pooled_schema
            _activate(tenant, now)
        else:
            tenant.schema_name = Tenant.new_schema_name()
            tenant.status = Tenant.Status.PROVISIONING
            tenant.provisioning_progress = 0
        tenant.save()
        audit.record("tenant.approved", actor=acting_user, target=tenant, before=before, after=snapshot(tenant),
                     tenant=tenant)
        # The owner's email goes out when the workspace is usable: now, or when provisioning finishes.
        _announce(tenant, "approved" if pooled_schema else "status")
        if not pooled_schema:
            transaction.on_commit(lambda: provision_tenant.delay(tenant.pk))
        transaction.on_commit(_refill_pool_later)
    return tenant


@in_public_schema
def finish_provisioning(tenant_id, on_progress=None):
    """Background fallback when the pool was empty: create and migrate the schema, then activate."""
    tenant = Tenant.objects.get(pk=tenant_id)
    if tenant.status != Tenant.Status.PROVISIONING:
        return tenant
    # A redelivered task (the worker died mid-way) finds its own half-made schema: the name belongs to this
    # never-activated tenant alone, so start it over.
    pool.drop_schema(tenant.schema_name)
    try:
        pool.create_and_migrate_schema(tenant.schema_name, on_progress=on_progress)
    except Exception as exc:
        Tenant.objects.filter(pk=tenant.pk).update(
            provisioning_error=f"{type(exc).__name__}: {exc}"[:2000], provisioning_progress=0
        )
        tenant.refresh_from_db()
        notify.tenant_status(tenant)  # already in the worker: tell the waiting page at once
        raise
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant_id)
        before = snapshot(tenant)
        _activate(tenant, timezone.now())
        tenant.save()
        audit.record("tenant.provisioned", actor=None, target=tenant, before=before, after=snapshot(tenant),
                     tenant=tenant)
        _announce(tenant, "provisioned")
    return tenant


@shared_task(name="tenants.tasks.provision_tenant", acks_late=True)
def provision_tenant(tenant_id):
    """Fallback when approval found the pool empty. Failures stay visible on the tenant for an admin to retry."""
    tenant = Tenant.objects.get(pk=tenant_id)

    def on_progress(applied, total):
        percent = int(100 * applied / total) if total else 100
        Tenant.objects.filter(pk=tenant_id).update(provisioning_progress=min(percent, 99))
        tenant.provisioning_progress = min(percent, 99)
        notify.provisioning_progress(tenant, applied, total)

    finish_provisioning(tenant_id, on_progress=on_progress)


@in_public_schema
def retry_provisioning(tenant, *, acting_user):
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if tenant.status != Tenant.Status.PROVISIONING or not tenant.provisioning_error:
            raise TenantStateError(tenant, "retry provisioning of")
        before = snapshot(tenant)
        pooled_schema = pool.take_pooled_schema()
        tenant.provisioning_error = ""
        if pooled_schema:
            tenant.schema_name = pooled_schema
            _activate(tenant, timezone.now())
        else:
            tenant.schema_name = Tenant.new_schema_name()
        tenant.save()
        audit.record("tenant.provisioning_retried", actor=acting_user, target=tenant, before=before,
                     after=snapshot(tenant), tenant=tenant)
        _announce(tenant, "provisioned" if pooled_schema else "status")
        if not pooled_schema:
            transaction.on_commit(lambda: provision_tenant.delay(tenant.pk))
    return tenant


@in_public_schema
@transaction.atomic
def reject_tenant(tenant, *, acting_user, reason):
    if not has_visible_text(reason):
        raise DomainError(TenantError.REASON_REQUIRED, "Give the applicant a reason for the rejection.")
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if tenant.status != Tenant.Status.PENDING:
        raise TenantStateError(tenant, "reject")
    before = snapshot(tenant)
    tenant.status = Tenant.Status.REJECTED
    reason = reason.strip()
    tenant.rejection_reason = reason
    tenant.save()
    audit.record("tenant.rejected", actor=acting_user, target=tenant, before=before,
                 after={**snapshot(tenant), "reason": reason}, tenant=tenant)
    _announce(tenant, "rejected")
    return tenant


@in_public_schema
@transaction.atomic
def suspend_tenant(tenant, *, acting_user, reason=""):
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if tenant.status != Tenant.Status.ACTIVE:
        raise TenantStateError(tenant, "suspend")
    before = snapshot(tenant)
    tenant.status = Tenant.Status.SUSPENDED
    tenant.suspension_reason = (reason or "").strip()
    tenant.save()
    audit.record("tenant.suspended", actor=acting_user, target=tenant, before=before,
                 after={**snapshot(tenant), "reason": tenant.suspension_reason}, tenant=tenant)
    _announce(tenant, "suspended")
    return tenant


@in_public_schema
@transaction.atomic
def reactivate_tenant(tenant, *, acting_user):
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if tenant.status != Tenant.Status.SUSPENDED:
        raise TenantStateError(tenant, "reactivate")
    before = snapshot(tenant)
    tenant.status = Tenant.Status.ACTIVE
    tenant.suspension_reason = ""
    tenant.save()
    audit.record("tenant.reactivated", actor=acting_user, target=tenant, before=before, after=snapshot(tenant),
                 tenant=tenant)
    _announce(tenant, "reactivated")
    return tenant


@in_public_schema
@transaction.atomic
def update_tenant(tenant, *, acting_user, **changes):
    """Platform admin edits: name, plan, trial_ends_at."""
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    before = snapshot(tenant)
    for field in ("name", "plan", "trial_ends_at"):
        if field in changes:
            setattr(tenant, field, changes[field])
    tenant.save()
    signals.tenant_updated.send(sender=Tenant, tenant=tenant, changes=changes, acting_user=acting_user)
    tenant.refresh_from_db()
    audit.record("tenant.updated", actor=acting_user, target=tenant, before=before, after=snapshot(tenant),
                 tenant=tenant)
    return tenant


SETTINGS_FIELDS = ("name", "timezone", "locale", "webhook_url", "require_2fa")


def settings_of(tenant):
    return {field: getattr(tenant, field) for field in SETTINGS_FIELDS}


@in_public_schema
@transaction.atomic
def update_tenant_settings(tenant, *, acting_user, **changes):
    """The workspace's settings (SETTINGS_FIELDS), by its owners and admins or a platform admin. The time zone is
    the one analytics' days and the automation's business hours use; the locale the one its pages are shown in."""
    unknown = set(changes) - set(SETTINGS_FIELDS)
    if unknown:
        raise ValueError(f"not settings: {sorted(unknown)}")
    if "name" in changes:
        changes["name"] = (changes["name"] or "").strip()
        if not any(char.isalnum() for char in changes["name"]):
            raise DomainError(TenantError.INVALID_NAME, "Use letters or digits in the business name.")
    if "timezone" in changes and changes["timezone"] not in zoneinfo.available_timezones():
        raise DomainError(TenantError.INVALID_TIME_ZONE,
                          f"'{changes['timezone']}' is not an IANA time zone, e.g. Asia/Jakarta.")
    if "locale" in changes and changes["locale"] not in dict(LOCALES):
        raise DomainError(TenantError.INVALID_LOCALE, f"'{changes['locale']}' is not a language offered here.",
                          {"locales": [code for code, _ in LOCALES]})
    if changes.get("webhook_url"):
        check_target(changes["webhook_url"], resolve=False)  # DomainError invalid_url
    if changes.get("require_2fa") and not tenant.require_2fa and not is_mfa_enabled(acting_user):
        # Requiring it without having it would lock the owner out of the page they are on.
        raise DomainError(TenantError.TWO_FACTOR_NOT_SET_UP,
                          "Set up two-factor authentication for your own account first, then require it.")
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    before = settings_of(tenant)
    for field, value in changes.items():
        setattr(tenant, field, value)
    after = settings_of(tenant)
    if after != before:
        tenant.save(update_fields=[field for field in SETTINGS_FIELDS if after[field] != before[field]])
        changed = [field for field in SETTINGS_FIELDS if after[field] != before[field]]
        audit.record("tenant.settings_updated", actor=acting_user, target=tenant,
                     before={field: before[field] for field in changed},
                     after={field: after[field] for field in changed}, tenant=tenant)
    return tenant


@in_public_schema
def delete_tenant(tenant, *, acting_user, reason=""):
    """Remove a tenant row (its memberships, keys, domains, invitations and billing rows go with it) and drop its
    schema. Irreversible; the audit row survives with the tenant unset. signals.tenant_deleting lets the apps
    remove the files they kept for it once this commits."""
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if tenant.status == Tenant.Status.POOLED:
            raise TenantStateError(tenant, "delete")
        audit.record("tenant.deleted", actor=acting_user, target=tenant,
                     before={**snapshot(tenant), "slug": tenant.slug, "schema": tenant.schema_name},
                     after={"reason": reason} if reason else None)
        schema_name = tenant.schema_name
        signals.tenant_deleting.send(sender=Tenant, tenant=tenant, schema_name=schema_name)
        Tenant.objects.filter(pk=tenant.pk).delete()
        pool.drop_schema(schema_name)
    notify.pending_count_changed()


def _announce(tenant, event):

    tenant_id = tenant.pk
    transaction.on_commit(lambda: notify.announce_tenant_change.delay(tenant_id, event))


def _refill_pool_later():

    pool.refill_tenant_pool.delay()


def default_plan():
    return Plan.objects.filter(is_public=True).order_by("sort_order").first()


def mark_notifications_read(tenant, *, acting_user):
    """The member saw the tenant's notifications: none is unread any more. Returns how many were."""
    return tenant.notifications.filter(read_at__isnull=True).update(read_at=timezone.now())
