from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self):
        # Imported here: ready() runs once every app's models are loaded.
        from tenants.signals import tenant_approved, tenant_updated

        from . import actions

        tenant_approved.connect(actions.on_tenant_approved, dispatch_uid="billing.start_trial")
        tenant_updated.connect(actions.on_tenant_updated, dispatch_uid="billing.follow_tenant")
