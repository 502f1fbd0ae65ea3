"""Which members have the inbox open: each open conversation page (list or one conversation) is a websocket, kept
in one Redis sorted set per workspace as "<membership id>:<channel>" scored by when it was last heard from (on
connect and on every heartbeat ping, 20 s apart in static/js/live.js). A member is online while one of their pages
was heard from in the last ONLINE_SECONDS; a closed page leaves at once, a crashed one when that runs out.

Read by round robin (whatsapp.inbox.selectors.round_robin_pool: online agents first) and the list page; the
consumers (whatsapp.inbox.consumers) write it and tell open list pages who is online."""
import time

from django.db import connection

from core import redis

ONLINE_SECONDS = 60


def _key(schema_name):
    # The database's name too, as the pipeline's wake flags: two installations (or test workers) on one Redis.
    return f"sb:inbox-online:{connection.settings_dict['NAME']}:{schema_name}"


def seen(schema_name, membership_id, channel_name):
    """This page of this member was heard from now. Returns whether the member was offline before (a change)."""
    was = membership_id in online_member_ids(schema_name)
    client = redis.client()
    pipe = client.pipeline()
    pipe.zadd(_key(schema_name), {f"{membership_id}:{channel_name}": time.time()})
    pipe.expire(_key(schema_name), 24 * 3600)
    pipe.execute()
    return not was


def gone(schema_name, membership_id, channel_name):
    """This page closed. Returns whether the member is offline now (their last page)."""
    redis.client().zrem(_key(schema_name), f"{membership_id}:{channel_name}")
    return membership_id not in online_member_ids(schema_name)


def online_member_ids(schema_name, *, now=None):
    """The membership ids of the members with an inbox page open now."""
    client, now = redis.client(), time.time() if now is None else now
    client.zremrangebyscore(_key(schema_name), 0, now - ONLINE_SECONDS)
    entries = client.zrangebyscore(_key(schema_name), now - ONLINE_SECONDS, "+inf")
    found = set()
    for entry in entries:
        member, _, _ = entry.decode().partition(":")
        if member.isdigit():
            found.add(int(member))
    return found
