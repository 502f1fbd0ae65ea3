"""Usage per tenant: API requests (per API key), messages sent and received, media bytes, webhook deliveries, per
day in the workspace's time zone, against the plan's limits.

API requests are counted in Redis by analytics.middleware (one HINCRBY per request, in the request's own
round trip budget) and moved into each tenant's ApiUsageHourly by beat (analytics.tasks.flush_api_usage), so the
database sees one upsert per tenant, key and hour instead of one write per request. Messages and media bytes come
from the message rollups; webhook deliveries from the deliveries' creation time.
"""
import uuid
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import ApiKey
from core.redis import client
from whatsapp.sessions.models import WhatsAppSession

from . import selectors

KEY_TTL_SECONDS = 3 * 24 * 3600


def _key(hour):
    return f"sb:usage:{connection.settings_dict['NAME']}:{hour:%Y%m%d%H}"


def count_request(schema_name, api_key_id, now=None):
    """One API request of this tenant (api_key_id None: the browser's session)."""
    hour = (now or timezone.now()).astimezone(selectors.UTC).replace(minute=0, second=0, microsecond=0)
    key = _key(hour)
    client().pipeline(transaction=False).hincrby(key, f"{schema_name}|{api_key_id or 0}", 1).expire(
        key, KEY_TTL_SECONDS).execute()


def flush(now=None):
    """Move the counted requests of the last hours into the tenants' tables. A key is renamed before it is read,
    so requests counted meanwhile go to a fresh key and none is counted twice; a renamed key left by a flush that
    died is read first. Returns the requests moved."""
    redis = client()
    now = (now or timezone.now()).astimezone(selectors.UTC).replace(minute=0, second=0, microsecond=0)
    prefix = f"sb:usage:{connection.settings_dict['NAME']}:"
    taken = [key.decode() for key in redis.scan_iter(match=prefix + "*:taken:*", count=1000)]
    for hours_back in range(0, 72):
        key = _key(now - timedelta(hours=hours_back))
        target = f"{key}:taken:{uuid.uuid4().hex}"
        try:
            redis.rename(key, target)
        except Exception:  # no such key: nothing counted that hour
            continue
        taken.append(target)
    moved = 0
    for target in taken:
        hour = datetime.strptime(target.split(":")[3], "%Y%m%d%H").replace(tzinfo=selectors.UTC)
        by_schema = defaultdict(list)
        for field, value in redis.hgetall(target).items():
            schema_name, key_id = field.decode().rsplit("|", 1)
            by_schema[schema_name].append((int(key_id), int(value)))
        for schema_name, counts in by_schema.items():
            try:
                with schema_context(schema_name), transaction.atomic(), connection.cursor() as cursor:
                    for key_id, requests in counts:
                        cursor.execute("""
                            INSERT INTO analytics_apiusagehourly AS u (hour, api_key_id, requests) VALUES (%s, %s, %s)
                            ON CONFLICT (hour, api_key_id) DO UPDATE SET requests = u.requests + EXCLUDED.requests""",
                                       [hour, key_id, requests])
                        moved += requests
            except Exception:  # a schema dropped since (a deleted tenant): its counts go with it
                continue
        redis.delete(target)
    return moved


def _local_days(zone, first, last):
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def usage(tenant, first, last):
    """Per local day from `first` to `last` (dates, inclusive) and in total: API requests, messages sent and
    received, media bytes, webhook deliveries; requests per API key; the plan's limits and what is in use."""
    zone = selectors.zone_of(tenant)
    since = selectors.floor_hour(selectors.midnight(first, zone))
    until = selectors.midnight(last + timedelta(days=1), zone)
    days = {day: {"date": day.isoformat(), "api_requests": 0, "messages_sent": 0, "messages_received": 0,
                  "media_bytes": 0, "webhook_deliveries": 0} for day in _local_days(zone, first, last)}
    params = {"since": since, "until": until, "tz": str(zone)}
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT (hour AT TIME ZONE %(tz)s)::date, sum(count) FILTER (WHERE direction = 'out' AND status <> 'failed'),
                   sum(count) FILTER (WHERE direction = 'in'), sum(media_bytes)
            FROM (SELECT hour, direction, status, count, media_bytes FROM analytics_hourlyrollup
                  WHERE hour >= %(since)s AND hour < %(until)s
                  UNION ALL
                  SELECT hour, direction, new_status, 1, new_bytes FROM analytics_messagecounter
                  WHERE new_status IS NOT NULL AND hour >= %(since)s AND hour < %(until)s
                  UNION ALL
                  SELECT hour, direction, old_status, -1, -old_bytes FROM analytics_messagecounter
                  WHERE old_status IS NOT NULL AND hour >= %(since)s AND hour < %(until)s) h
            GROUP BY 1""", params)
        for day, sent, received, media in cursor.fetchall():
            if day in days:
                days[day].update(messages_sent=int(sent or 0), messages_received=int(received or 0),
                                 media_bytes=int(media or 0))
        cursor.execute("""
            SELECT (created_at AT TIME ZONE %(tz)s)::date, count(*) FROM whatsapp_webhookdelivery
            WHERE created_at >= %(since)s AND created_at < %(until)s GROUP BY 1""", params)
        for day, deliveries in cursor.fetchall():
            if day in days:
                days[day]["webhook_deliveries"] = deliveries
        cursor.execute("""
            SELECT (hour AT TIME ZONE %(tz)s)::date, api_key_id, sum(requests) FROM analytics_apiusagehourly
            WHERE hour >= %(since)s AND hour < %(until)s GROUP BY 1, 2""", params)
        per_key = defaultdict(int)
        for day, key_id, requests in cursor.fetchall():
            if day in days:
                days[day]["api_requests"] += int(requests)
                per_key[key_id] += int(requests)
    keys = {key.pk: key for key in ApiKey.objects.filter(tenant=tenant, pk__in=[k for k in per_key if k])}
    api_keys = [{"id": key_id or None, "name": keys[key_id].name if key_id in keys else
                 ("Signed-in pages" if not key_id else "(deleted key)"),
                 "prefix": keys[key_id].prefix if key_id in keys else "", "requests": requests}
                for key_id, requests in sorted(per_key.items(), key=lambda item: -item[1])]
    series = list(days.values())
    totals = {name: sum(day[name] for day in series) for name in
              ("api_requests", "messages_sent", "messages_received", "media_bytes", "webhook_deliveries")}
    return {"from": first.isoformat(), "to": last.isoformat(), "time_zone": str(zone), "totals": totals,
            "days": series, "api_keys": api_keys, "plan": plan_limits(tenant)}


def plan_limits(tenant):
    """The plan's limits beside what the workspace uses now (-1: no limit)."""
    plan = tenant.plan
    return {"code": plan.code if plan else None, "name": plan.name if plan else None,
            "max_sessions": plan.max_sessions if plan else None, "sessions": WhatsAppSession.objects.count(),
            "max_users": plan.max_users if plan else None, "users": tenant.memberships.count(),
            "messages_per_minute": plan.messages_per_minute if plan else None}


def this_month(tenant, now=None):
    zone = selectors.zone_of(tenant)
    today = (now or timezone.now()).astimezone(zone).date()
    return usage(tenant, today.replace(day=1), today)
