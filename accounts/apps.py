from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self):
        # Imported here: ready() runs once every app's models are loaded.
        from django.contrib.auth.signals import user_logged_in

        from tenants import stats

        from . import devices
        from .models import ApiKey

        user_logged_in.connect(devices.note_sign_in, dispatch_uid="accounts.new_device_email")

        stats.contribute(lambda tenant: {
            "api_keys_active": ApiKey.objects.active().filter(tenant=tenant).count(),
            "api_keys_total": ApiKey.objects.filter(tenant=tenant).count(),
        })
