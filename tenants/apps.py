from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"

    def ready(self):
        # Imported here: ready() runs once the models are loaded.
        from core.schema import DYNAMIC_ENUMS

        from .models import Plan

        DYNAMIC_ENUMS["plans"] = lambda: Plan.objects.order_by("sort_order", "code").values_list("code", flat=True)
