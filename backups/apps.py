from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"

    def ready(self):
        from accounts import dashboard  # here: apps register with the dashboard once the registry is ready
        from alerts import rules
        from tenants.signals import tenant_deleting

        from . import contents
        from .notify import backup_incidents, wal_incidents
        from .views import export_card

        dashboard.add_card(dashboard.Part("backups/_export_card.html", export_card))
        rules.register(backup_incidents)
        rules.register(wal_incidents)
        tenant_deleting.connect(contents.forget_tenant_files, dispatch_uid="backups.forget_tenant_files")
