"""Processes say they are alive by writing a key with a short TTL in Redis; health reads them back in one round trip
instead of asking every worker over the broker (a Celery ping costs a second and more).

Keys: sb:hb:<database>:<kind>:<name> (the database name keeps installations sharing one Redis apart), each a JSON
object with what the process wants known (queues, pid, host, resident memory) and when it wrote it. Kinds: `worker`
(every Celery worker, config.heartbeat), `host` (a session host, whatsapp.host.runtime), `web` (every daphne of
scripts/web.py, config.asgi).
"""
import json
import logging
import os
import socket
import threading
import time

from django.db import close_old_connections, connection

from .redis import client

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 10
TTL_SECONDS = 3 * HEARTBEAT_SECONDS


def _prefix(kind):
    return f"sb:hb:{connection.settings_dict['NAME']}:{kind}:"


def beat(kind, name, ttl=TTL_SECONDS, **info):
    """Write `name`'s heartbeat, gone after `ttl` seconds unless written again (three beats' time)."""
    client().set(_prefix(kind) + name, json.dumps({**info, "name": name, "at": time.time()}), ex=round(ttl))


def forget(kind, name):
    client().delete(_prefix(kind) + name)


def alive(kind):
    """What every process of `kind` wrote last, oldest write first (keys that expired are gone)."""
    redis = client()
    keys = list(redis.scan_iter(match=_prefix(kind) + "*", count=1000))
    values = redis.mget(keys) if keys else []
    found = [json.loads(value) for value in values if value]
    return sorted(found, key=lambda entry: entry.get("at", 0))


def rss_mb(pid="self"):
    """A process's resident memory in MiB (Linux' /proc; None where there is none)."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            pages = int(statm.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


def _children():
    found = []
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as children:
                found.extend(int(pid) for pid in children.read().split())
    except (OSError, ValueError):
        pass
    return sorted(set(found))


def process_info():
    """What every process's heartbeat says about it: pid, host, resident memory and that of its children (a
    prefork Celery worker's pool processes, where the tasks run): the memory alert reads them."""
    info = {"pid": os.getpid(), "host": socket.gethostname(), "rss_mb": rss_mb()}
    children = {pid: rss for pid in _children() if (rss := rss_mb(pid)) is not None}
    if children:
        info["children_rss_mb"] = children
    return info


def keep_beating(kind, name, info=dict):
    """A daemon thread writing `kind`/`name`'s heartbeat (process_info() and info()) every HEARTBEAT_SECONDS until
    the returned event is set. For processes with no loop of their own to beat from (the web's daphnes)."""
    stopping = threading.Event()

    def run():
        while not stopping.is_set():
            try:
                beat(kind, name, **process_info(), **info())
            except Exception:  # Redis away: health will say so; the process keeps serving
                log.warning("%s heartbeat failed", kind, exc_info=True)
            finally:
                close_old_connections()
            stopping.wait(HEARTBEAT_SECONDS)

    threading.Thread(target=run, name=f"{kind}-heartbeat", daemon=True).start()
    return stopping
