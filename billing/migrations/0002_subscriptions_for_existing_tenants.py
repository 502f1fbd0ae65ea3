from django.db import migrations


def create_missing(apps, schema_editor):
    """Tenants approved before billing existed get the trial their tenant row already carries."""
    Tenant = apps.get_model("tenants", "Tenant")
    Plan = apps.get_model("tenants", "Plan")
    Customer = apps.get_model("billing", "Customer")
    Subscription = apps.get_model("billing", "Subscription")
    fallback = Plan.objects.order_by("sort_order", "id").first()
    for tenant in Tenant.objects.filter(status__in=["active", "suspended", "provisioning"], subscription__isnull=True):
        Customer.objects.get_or_create(tenant=tenant)
        Subscription.objects.create(tenant=tenant, plan_id=tenant.plan_id or fallback.pk, status="trialing",
                                    trial_ends_at=tenant.trial_ends_at)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial"), ("tenants", "0003_notification")]
    operations = [migrations.RunPython(create_missing, migrations.RunPython.noop)]
