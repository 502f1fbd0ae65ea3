from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self):
        # Imported here: ready() runs once every app's models are loaded.
        from tenants import stats

        from .models import ApiKey

        stats.contribute(lambda tenant: {
            "api_keys_active": ApiKey.objects.active().filter(tenant=tenant).count(),
            "api_keys_total": ApiKey.objects.filter(tenant=tenant).count(),
        })
