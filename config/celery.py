import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# tenant-schemas-celery stamps every task with the schema it was sent from and runs it there.
app = CeleryApp("switchboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _add_worker_steps():
    # Imported lazily by the steps themselves; the session host's costs nothing in workers that don't serve
    # "whatsapp".
    from config.heartbeat import WorkerHeartbeatStep
    from whatsapp.host.bootstep import SessionHostStep

    app.steps["consumer"].add(WorkerHeartbeatStep)
    app.steps["consumer"].add(SessionHostStep)


_add_worker_steps()
