import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# tenant-schemas-celery stamps every task with the schema it was sent from and runs it there.
app = CeleryApp("switchboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _add_session_host_step():
    # Imported lazily by the step itself; adding it here costs nothing in workers that don't serve "whatsapp".
    from whatsapp.host.bootstep import SessionHostStep

    app.steps["consumer"].add(SessionHostStep)


_add_session_host_step()
