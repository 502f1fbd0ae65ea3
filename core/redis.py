"""One Redis client per process for REDIS_URL (rate limits, the sending pipeline's wake flags).

redis-py's client is thread-safe and pools its connections; a forked child (Celery prefork) gets its own, as a
pool shared across a fork would hand one socket to two processes.
"""
import os
import threading

from django.conf import settings

_clients = {}
_lock = threading.Lock()


def client():
    from redis import Redis

    key = (settings.REDIS_URL, os.getpid())
    found = _clients.get(key)
    if found is None:
        with _lock:
            found = _clients.get(key)
            if found is None:
                found = _clients[key] = Redis.from_url(settings.REDIS_URL)
    return found
