"""Every Celery worker of this project writes a heartbeat (core.heartbeats) from a thread of its own: at start, every
HEARTBEAT_SECONDS, and away at a clean stop. GET /api/v1/health/detailed reads them."""
import logging
import os
import socket
import threading

from celery import bootsteps

log = logging.getLogger(__name__)


class WorkerHeartbeatStep(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.stopping = threading.Event()
        self.thread = None
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def start(self, consumer):
        queues = sorted(queue.name for queue in consumer.task_consumer.queues) if consumer.task_consumer else []
        self.thread = threading.Thread(target=self._run, args=(queues,), name="worker-heartbeat", daemon=True)
        self.thread.start()

    def _run(self, queues):
        # Imported in the thread: the step is added while Celery is configured, before Django is set up.
        from django.db import close_old_connections

        from core import heartbeats

        while not self.stopping.is_set():
            try:
                heartbeats.beat("worker", self.name, queues=queues, **heartbeats.process_info())
            except Exception:  # Redis away: health will say so; the worker keeps working
                log.warning("worker heartbeat failed", exc_info=True)
            finally:
                close_old_connections()
            self.stopping.wait(heartbeats.HEARTBEAT_SECONDS)

    def stop(self, consumer):
        self.stopping.set()
        try:
            from core import heartbeats  # as in _run

            heartbeats.forget("worker", self.name)
        except Exception:
            log.warning("could not remove the worker heartbeat", exc_info=True)
