"""What the analytics page and API show, read from the rollups (analytics.models) plus the few counted changes not
folded yet, so figures are exact at every moment without counting messages. Hours are UTC buckets; a bucket
belongs to the day and weekday its start falls on in the workspace's time zone (for zones half an hour off UTC,
a message in the first half hour of a bucket counts on the bucket's day)."""
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from whatsapp.conversations.models import Contact, Conversation, Group
from whatsapp.sessions.models import WhatsAppSession
from whatsapp.webhooks.models import WebhookDelivery

from . import rollups

SENT_STATUSES = ("queued", "sending", "sent", "delivered", "read")  # accepted for sending: counted as sent
PENDING_STATUSES = ("queued", "sending")
REACHED_STATUSES = ("sent", "delivered", "read")  # left for WhatsApp: what delivery and read rates divide by
ACTIVE_SESSION_STATES = ("connected",)
TOP_CONTACTS = 10
RECENT_DAYS = 30  # rates, failures, heatmap, top contacts and response times cover the last 30 days
WEBHOOK_DAYS = 7

# Rollup rows and the counted changes not folded yet, as (hour, session_id, direction, status, n).
_HOURLY = """
  SELECT hour, session_id, direction, status, count AS n FROM analytics_hourlyrollup WHERE hour >= %(since)s
  UNION ALL
  SELECT hour, session_id, direction, new_status, 1 FROM analytics_messagecounter
  WHERE new_status IS NOT NULL AND hour >= %(since)s
  UNION ALL
  SELECT hour, session_id, direction, old_status, -1 FROM analytics_messagecounter
  WHERE old_status IS NOT NULL AND hour >= %(since)s
"""


def _rows(sql, params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def zone_of(tenant):
    try:
        return ZoneInfo(tenant.timezone or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


UTC = ZoneInfo("UTC")


def midnight(day, zone):
    return datetime.combine(day, time.min, tzinfo=zone)


def floor_hour(moment):
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _session_filter(session_id):
    return (" AND session_id = %(session)s", {"session": session_id}) if session_id is not None else ("", {})


def daily_counts(zone, first_day, session_id=None):
    """{local day: {"sent", "received", "failed", "pending", "reached", "delivered", "read"}} from first_day on."""
    where, params = _session_filter(session_id)
    rows = _rows(f"""
        SELECT (hour AT TIME ZONE %(tz)s)::date AS day, direction, status, sum(n) FROM ({_HOURLY}) h
        WHERE true {where} GROUP BY 1, 2, 3""",
                 {"since": floor_hour(midnight(first_day, zone)), "tz": str(zone), **params})
    days = {}
    for day, direction, status, n in rows:
        if day < first_day or not n:
            continue
        figures = days.setdefault(day, empty_counts())
        _add(figures, direction, status, int(n))
    return days


def empty_counts():
    return {"sent": 0, "received": 0, "failed": 0, "pending": 0, "delivered": 0, "read": 0, "reached": 0}


def _add(figures, direction, status, n):
    if direction == "in":
        figures["received"] += n
        return
    if status in SENT_STATUSES:
        figures["sent"] += n
    if status in PENDING_STATUSES:
        figures["pending"] += n
    if status == "failed":
        figures["failed"] += n
    if status in REACHED_STATUSES:
        figures["reached"] += n
    if status in ("delivered", "read"):
        figures["delivered"] += n
    if status == "read":
        figures["read"] += n


def _sum(days, since_day, until_day):
    total = empty_counts()
    for day, figures in days.items():
        if since_day <= day <= until_day:
            for key, value in figures.items():
                total[key] += value
    return total


def _rate(part, whole):
    return round(part / whole, 4) if whole else None


def _public(figures):
    return {key: figures[key] for key in ("sent", "received", "failed", "pending")}


def trends(zone, days, session_id=None, *, today=None):
    """Per local day, oldest first, the last `days` days (today included): sent, received, failed."""
    today = today or timezone.now().astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    counts = daily_counts(zone, first, session_id)
    out = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        figures = counts.get(day, empty_counts())
        out.append({"date": day.isoformat(), "sent": figures["sent"], "received": figures["received"],
                    "failed": figures["failed"]})
    return out


def _local_hours(zone, first_day):
    """(local hour, direction, status, n) from first_day's local midnight on: one scan shared by the day figures
    and the weekday × hour activity."""
    rows = _rows(f"""
        SELECT hour AT TIME ZONE %(tz)s, direction, status, sum(n) FROM ({_HOURLY}) h GROUP BY 1, 2, 3""",
                 {"since": floor_hour(midnight(first_day, zone)), "tz": str(zone)})
    return [(local, direction, status, int(n)) for local, direction, status, n in rows if n]


def message_stats(zone, now=None, hours=None):
    now = (now or timezone.now()).astimezone(zone)
    today = now.date()
    week_start = today - timedelta(days=today.weekday())
    month_start = today.replace(day=1)
    recent_start = today - timedelta(days=RECENT_DAYS - 1)
    first = min(week_start, month_start, recent_start)
    days = {}
    for local, direction, status, n in hours if hours is not None else _local_hours(zone, first):
        if local.date() >= first:
            _add(days.setdefault(local.date(), empty_counts()), direction, status, n)
    recent = _sum(days, recent_start, today)
    return {
        "today": _public(_sum(days, today, today)),
        "week": _public(_sum(days, week_start, today)),
        "month": _public(_sum(days, month_start, today)),
        "delivery_rate": _rate(recent["delivered"], recent["reached"]),
        "read_rate": _rate(recent["read"], recent["reached"]),
        "failures_by_reason": failures_by_reason(zone, recent_start),
        "latency": send_latency(now),
    }


LATENCY_HOURS = 24


def send_latency(now=None):
    """p50/p95 seconds of accept → sent (sent_at - created_at) and sent → delivered (delivered_at - sent_at) of the
    outgoing messages accepted in the last 24 hours, in one statement over whatsapp_message's created_at index
    (a day's rows at most: the one figure not in the rollups, as a percentile cannot be summed)."""
    since = (now or timezone.now()) - timedelta(hours=LATENCY_HOURS)
    (row,) = _rows("""
        SELECT count(*) FILTER (WHERE sent_at IS NOT NULL),
               percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at))
                 FILTER (WHERE sent_at IS NOT NULL),
               count(*) FILTER (WHERE delivered_at IS NOT NULL AND sent_at IS NOT NULL),
               percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - sent_at))
                 FILTER (WHERE delivered_at IS NOT NULL AND sent_at IS NOT NULL)
        FROM whatsapp_message WHERE direction = 'out' AND created_at >= %s""", [since])

    def figures(count, percentiles):
        p50, p95 = percentiles or (None, None)
        return {"count": count, "p50_seconds": None if p50 is None else round(float(p50), 1),
                "p95_seconds": None if p95 is None else round(float(p95), 1)}

    return {"hours": LATENCY_HOURS, "accept_to_sent": figures(row[0], row[1]),
            "sent_to_delivered": figures(row[2], row[3])}


def failures_by_reason(zone, first_day, limit=10):
    """Failed messages by reason, of the local days from first_day on."""
    rows = _rows("""
        SELECT reason, sum(n) FROM (
          SELECT hour, reason, count AS n FROM analytics_failurehourly WHERE hour >= %(since)s
          UNION ALL
          SELECT hour, new_reason, 1 FROM analytics_messagecounter WHERE new_reason IS NOT NULL AND hour >= %(since)s
          UNION ALL
          SELECT hour, old_reason, -1 FROM analytics_messagecounter WHERE old_reason IS NOT NULL AND hour >= %(since)s
        ) f
        WHERE (hour AT TIME ZONE %(tz)s)::date >= %(day)s
        GROUP BY 1 HAVING sum(n) > 0 ORDER BY 2 DESC, 1 LIMIT %(limit)s""",
                 {"since": floor_hour(midnight(first_day, zone)), "tz": str(zone), "day": first_day, "limit": limit})
    return [{"reason": reason or "(no reason given)", "count": int(n)} for reason, n in rows]


def hourly_activity(zone, now=None, hours=None):
    """Messages (both directions) of the last 30 days by local weekday (0 = Monday) and hour: 168 cells."""
    first = (now or timezone.now()).astimezone(zone).date() - timedelta(days=RECENT_DAYS - 1)
    cells = {(weekday, hour): [0, 0] for weekday in range(7) for hour in range(24)}
    for local, direction, _, n in hours if hours is not None else _local_hours(zone, first):
        if local.date() >= first:
            cells[(local.weekday(), local.hour)][0 if direction == "out" else 1] += n
    return [{"weekday": weekday, "hour": hour, "sent": sent, "received": received}
            for (weekday, hour), (sent, received) in cells.items()]


def ceil_hour(moment):
    floor = floor_hour(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def month_bounds(month, zone):
    """The UTC hour buckets of a local month (its first day): [first, end), each bucket belonging to the local day its
    start falls on."""
    following = (month + timedelta(days=32)).replace(day=1)
    return ceil_hour(midnight(month, zone)), ceil_hour(midnight(following, zone))


def top_contacts(zone, now=None, limit=TOP_CONTACTS):
    """The chats with the most messages this month (the workspace's month): the UTC month's rollup, plus the hours
    of the local month before or after it, minus the UTC month's hours outside it (ChatEdgeHourly keeps those), plus
    the counted changes not folded yet."""
    month = (now or timezone.now()).astimezone(zone).date().replace(day=1)
    first, end = month_bounds(month, zone)
    utc_first = datetime.combine(month, time.min, tzinfo=UTC)
    utc_end = datetime.combine((month + timedelta(days=32)).replace(day=1), time.min, tzinfo=UTC)
    rows = _rows("""
        SELECT chat_jid, sum(sent), sum(received) FROM (
          SELECT chat_jid, sent, received FROM analytics_chatmonthly WHERE month = %(month)s
          UNION ALL
          SELECT chat_jid, sign * sent, sign * received FROM (
            SELECT chat_jid, sent, received,
                   CASE WHEN hour >= %(first)s AND hour < %(end)s THEN 1 ELSE -1 END AS sign
            FROM analytics_chatedgehourly
            WHERE (hour >= %(a1)s AND hour < %(b1)s) OR (hour >= %(a2)s AND hour < %(b2)s)) edges
          UNION ALL
          SELECT chat_jid, CASE WHEN direction = 'out' THEN n ELSE 0 END, CASE WHEN direction = 'in' THEN n ELSE 0 END
          FROM (SELECT chat_jid, direction, CASE WHEN old_status IS NULL THEN 1 ELSE -1 END AS n
                FROM analytics_messagecounter
                WHERE (old_status IS NULL OR new_status IS NULL) AND hour >= %(first)s AND hour < %(end)s) c
        ) chats
        GROUP BY 1 HAVING sum(sent) + sum(received) > 0 ORDER BY sum(sent) + sum(received) DESC, 1
        LIMIT %(limit)s""", {"month": month, "first": first, "end": end,
                             "a1": min(first, utc_first), "b1": max(first, utc_first),
                             "a2": min(end, utc_end), "b2": max(end, utc_end), "limit": limit})
    jids = [row[0] for row in rows]
    contacts = {c.jid: c for c in Contact.objects.filter(jid__in=jids)}
    groups = {g.jid: g.name for g in Group.objects.filter(jid__in=jids)}
    out = []
    for jid, sent, received in rows:
        contact = contacts.get(jid)
        phone = (contact.phone if contact else "") or ("+" + jid.split("@")[0] if jid.endswith("@s.whatsapp.net")
                                                        else "")
        name = (contact.name or contact.push_name if contact else "") or groups.get(jid) or phone or jid
        out.append({"chat_jid": jid, "name": name, "phone": phone, "sent": int(sent), "received": int(received),
                    "total": int(sent) + int(received)})
    return out


def first_response(zone, first_day):
    """Count and average (exact) and median (estimated within its bucket, linearly) of the first responses of the
    local days from first_day on, from their hourly histogram."""
    buckets = _rows("""
        SELECT bucket, sum(count), sum(seconds_sum) FROM analytics_firstresponsehourly
        WHERE hour >= %(since)s AND (hour AT TIME ZONE %(tz)s)::date >= %(day)s
        GROUP BY 1 HAVING sum(count) > 0 ORDER BY 1""",
                    {"since": floor_hour(midnight(first_day, zone)), "tz": str(zone), "day": first_day})
    count = sum(int(n) for _, n, _ in buckets)
    if not count:
        return {"count": 0, "average_seconds": None, "median_seconds": None}
    total = sum(float(s) for _, _, s in buckets)
    return {"count": count, "average_seconds": round(total / count, 1),
            "median_seconds": round(_median_of_buckets([(b, int(n)) for b, n, _ in buckets], count), 1)}


def _median_of_buckets(buckets, count):
    bounds = (0.0, *rollups.RESPONSE_BUCKETS)
    half, seen = count / 2, 0
    for bucket, n in buckets:
        if seen + n >= half:
            # width_bucket's bucket b holds [bounds[b], bounds[b + 1]); the last one is open: its width doubles.
            low = float(bounds[bucket])
            high = float(bounds[bucket + 1]) if bucket + 1 < len(bounds) else low * 2
            return low + (high - low) * (half - seen) / n
        seen += n
    return float(bounds[-1])


def session_stats():
    by_state = dict(WhatsAppSession.objects.values_list("status").annotate(n=Count("id")).order_by())
    states = {state: by_state.get(state, 0) for state in WhatsAppSession.Status.values}
    return {"total": sum(states.values()), "active": sum(states[s] for s in ACTIVE_SESSION_STATES),
            "by_state": states}


def conversation_stats(zone, now=None):
    now = now or timezone.now()
    figures = Conversation.objects.aggregate(
        total=Count("id"), unread=Count("id", filter=Q(unread_count__gt=0)),
        active_7d=Count("id", filter=Q(last_message_at__gte=now - timedelta(days=7))))
    recent_start = now.astimezone(zone).date() - timedelta(days=RECENT_DAYS - 1)
    return {**figures, "first_response": first_response(zone, recent_start)}


def webhook_health(now=None):
    now = now or timezone.now()
    S = WebhookDelivery.Status
    rows = _rows("""
        SELECT count(*) FILTER (WHERE status = %(ok)s), count(*) FILTER (WHERE status = %(failed)s),
               count(*) FILTER (WHERE status = %(dead)s), count(*) FILTER (WHERE status = %(pending)s),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY last_duration_ms) FILTER (WHERE status = %(ok)s)
        FROM whatsapp_webhookdelivery WHERE created_at >= %(since)s""",
                 {"ok": S.SUCCEEDED, "failed": S.FAILED, "dead": S.DEAD, "pending": S.PENDING,
                  "since": now - timedelta(days=WEBHOOK_DAYS)})
    succeeded, retrying, dead, pending, p95 = rows[0]
    dead_letters = WebhookDelivery.objects.filter(status=S.DEAD).count()
    return {"days": WEBHOOK_DAYS, "succeeded": succeeded, "retrying": retrying, "dead": dead, "pending": pending,
            "success_rate": _rate(succeeded, succeeded + retrying + dead),
            "p95_ms": round(p95, 1) if p95 is not None else None, "dead_letters": dead_letters}


def dashboard(tenant, now=None):
    """Everything the analytics page and GET /api/v1/analytics/dashboard show."""
    now = now or timezone.now()
    zone = zone_of(tenant)
    sessions = session_stats()
    conversations = conversation_stats(zone, now)
    today = now.astimezone(zone).date()
    hours = _local_hours(zone, min(today.replace(day=1), today - timedelta(days=RECENT_DAYS - 1)))
    return {
        "overview": {"time_zone": str(zone), "generated_at": now.isoformat(), "sessions": sessions["total"],
                     "sessions_active": sessions["active"], "contacts": Contact.objects.count(),
                     "conversations": conversations["total"]},
        "message_stats": message_stats(zone, now, hours),
        "session_stats": sessions,
        "hourly_activity": hourly_activity(zone, now, hours),
        "top_contacts": top_contacts(zone, now),
        "conversation_stats": conversations,
        "webhook_health": webhook_health(now),
    }


def counted_changes_version():
    """A number that moves whenever a message changes in the current schema (the counter's sequence): live pages
    recompute their figures only when it moved."""
    return _rows("SELECT last_value FROM analytics_messagecounter_id_seq", [])[0][0]
