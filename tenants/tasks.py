from celery import shared_task

from . import actions, notify, pool


@shared_task(name="tenants.tasks.refill_tenant_pool", acks_late=True)
def refill_tenant_pool():
    return pool.fill_pool()


@shared_task(name="tenants.tasks.provision_tenant", acks_late=True)
def provision_tenant(tenant_id):
    """Fallback when approval found the pool empty. Failures stay visible on the tenant for an admin to retry."""
    from .models import Tenant

    tenant = Tenant.objects.get(pk=tenant_id)

    def on_progress(applied, total):
        percent = int(100 * applied / total) if total else 100
        Tenant.objects.filter(pk=tenant_id).update(provisioning_progress=min(percent, 99))
        tenant.provisioning_progress = min(percent, 99)
        notify.provisioning_progress(tenant, applied, total)

    actions.finish_provisioning(tenant_id, on_progress=on_progress)


@shared_task(name="tenants.tasks.announce_tenant_change", acks_late=True)
def announce_tenant_change(tenant_id, event):
    notify.announce(tenant_id, event)
