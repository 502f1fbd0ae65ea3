"""Processes say they are alive by writing a key with a short TTL in Redis; health reads them back in one round trip
instead of asking every worker over the broker (a Celery ping costs a second and more).

Keys: sb:hb:<database>:<kind>:<name> (the database name keeps installations sharing one Redis apart), each a JSON
object with what the process wants known (queues, pid, host) and when it wrote it.
"""
import json
import time

from django.db import connection

from .redis import client

HEARTBEAT_SECONDS = 10
TTL_SECONDS = 3 * HEARTBEAT_SECONDS


def _prefix(kind):
    return f"sb:hb:{connection.settings_dict['NAME']}:{kind}:"


def beat(kind, name, **info):
    client().set(_prefix(kind) + name, json.dumps({**info, "name": name, "at": time.time()}), ex=TTL_SECONDS)


def forget(kind, name):
    client().delete(_prefix(kind) + name)


def alive(kind):
    """What every process of `kind` wrote last, oldest write first (keys that expired are gone)."""
    redis = client()
    keys = list(redis.scan_iter(match=_prefix(kind) + "*", count=1000))
    values = redis.mget(keys) if keys else []
    found = [json.loads(value) for value in values if value]
    return sorted(found, key=lambda entry: entry.get("at", 0))
