"""Starts the session host inside the `whatsapp` Celery worker (threads pool: neonize must never be imported
before a fork, and this worker never forks). Other workers ignore it."""
import logging

from celery import bootsteps

from .queues import SHARED_QUEUE, host_queue

log = logging.getLogger(__name__)


class SessionHostStep(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.host = None

    def start(self, consumer):
        queues = {queue.name for queue in consumer.task_consumer.queues} if consumer.task_consumer else set()
        if SHARED_QUEUE not in queues:
            return
        # Imported when the worker starts: Celery loads this module while it is configured, before Django is set up.
        from django.conf import settings

        from . import runtime

        provider_class = runtime.provider_class_for(settings.WHATSAPP_PROVIDER)
        self.host = runtime.SessionHost(provider_class, store_dir=settings.WHATSAPP_STORE_DIR)
        consumer.add_task_queue(host_queue(self.host.host_id))
        runtime.set_current_host(self.host)
        self.host.start()

    def stop(self, consumer):
        self._shutdown()

    def shutdown(self, consumer):
        self._shutdown()

    def _shutdown(self):
        if self.host is None:
            return
        from . import commands, runtime  # imported late, as in start()

        log.info("session host %s stopping", self.host.host_id)
        if self.host.stop(release=True):
            try:  # the other hosts claim the released sessions now, not at their next heartbeat
                commands.wake_hosts()
            except Exception:
                log.warning("could not wake the other hosts; they claim the sessions at their next heartbeat",
                            exc_info=True)
        runtime.set_current_host(None)
        self.host = None
