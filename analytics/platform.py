"""The platform's figures across every workspace (GET /api/v1/metrics… and the platform Metrics page), read in one
statement per figure over the tenants' schemas (a UNION ALL of one part per schema, each part the schema's own
tables) — never by visiting the schemas one by one, and never by counting messages where a rollup has the figure:

- messages by direction and status, and failures by reason: the hourly rollups (analytics.models) plus the counted
  changes not folded yet, as the tenant's own analytics read them;
- sessions by state: the sessions tables (a row per number);
- connections and disconnections: the sessions' activity log of the window (indexed by time);
- what is queued now and the last minutes' rate: the messages' status and created_at indexes over the few rows
  they name (no rollup has minutes);
- latencies: prometheus_client's histograms (whatsapp.messaging.latency and the send API's own), as every process
  of the installation recorded them since it started (analytics.metrics' registry);
- webhook delivery times: the last hour's deliveries (by their created_at index).

Hours are UTC buckets: a window of N hours is the current hour and the N - 1 before it.
"""
import math
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone
from functools import cached_property

from django.db import connection

from core.redis import client
from tenants.models import Tenant
from whatsapp.host.queues import SHARED_QUEUE
from whatsapp.messaging import latency

from . import metrics, selectors
from .selectors import empty_counts, floor_hour
from .tasks import COUNTED_STATUSES

WINDOW_DEFAULT_HOURS = 24
WINDOW_MAX_HOURS = 90 * 24
RATE_SECONDS = 300
WEBHOOK_HOURS = 1
REASONS_SHOWN = 10
# A session's activity kinds that move its connection: a drop is one of DROPS right after a `connected`.
CONNECTION_KINDS = ("connected", "reconnecting", "disconnected", "logged_out", "stopped")
DROPS = ("reconnecting", "disconnected", "logged_out")
METRICS = ("messages", "sent", "received", "failed", "error_rate", "connections", "disconnections")
INTERVALS = ("hour", "day")
SORTS = ("volume", "failure_rate", "sent", "received", "failed", "name")


def tenants(pk=None):
    """[(pk, schema_name, name, slug, status)] of the workspaces counted (active or suspended), by pk."""
    found = Tenant.objects.filter(status__in=COUNTED_STATUSES)
    if pk is not None:
        found = found.filter(pk=pk)
    return list(found.order_by("pk").values_list("pk", "schema_name", "name", "slug", "status"))


def across(counted, sql_for, params_for):
    """One statement over `counted` tenants' schemas: each part is sql_for(quoted schema), its parameters
    params_for(pk); every part's rows start with the tenant's pk (put `%s` first and pk first in the params)."""
    if not counted:
        return []
    parts, params = [], []
    for pk, schema, *_ in counted:
        parts.append(f"({sql_for(connection.ops.quote_name(schema))})")
        params.extend(params_for(pk))
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        return cursor.fetchall()


def window_start(now, hours):
    return floor_hour(now) - timedelta(hours=hours - 1)


# Rollup rows and the counted changes not folded yet, as (hour, direction, status, n), from %s on.
def _hourly(s):
    return f"""
      SELECT hour, direction, status, count AS n FROM {s}.analytics_hourlyrollup WHERE hour >= %s
      UNION ALL
      SELECT hour, direction, new_status, 1 FROM {s}.analytics_messagecounter WHERE new_status IS NOT NULL AND hour >= %s
      UNION ALL
      SELECT hour, direction, old_status, -1 FROM {s}.analytics_messagecounter WHERE old_status IS NOT NULL AND hour >= %s
    """


def _rate(part, whole):
    return round(part / whole, 4) if whole else None


BUCKETS = {"tenant": "0", "hour": "hour", "day": "(hour AT TIME ZONE 'UTC')::date"}


def message_counts(counted, since, by="tenant"):
    """{key: counts} of the messages created from `since` (an hour) on, with the tenant analytics' meaning
    (analytics.selectors: queued and sending count as sent); the key is the tenant's pk, the UTC hour or the UTC
    day as `by` says."""
    rows = across(counted, lambda s: f"""
        SELECT %s, {BUCKETS[by]}, direction, status, sum(n) FROM ({_hourly(s)}) h GROUP BY 2, 3, 4""",
                  lambda pk: [pk, since, since, since])
    found = {}
    for pk, bucket, direction, status, n in rows:
        if n:
            selectors._add(found.setdefault(pk if by == "tenant" else bucket, selectors.empty_counts()),
                           direction, status, int(n))
    return found


def summed(counts):
    total = empty_counts()
    for figures in counts:
        for key, value in figures.items():
            total[key] += value
    return total


def message_figures(figures):
    """What the API shows of counts: sent, received, failed, pending, volume (sent + received), failure rate
    (failed over what was sent or failed)."""
    outgoing = figures["sent"] + figures["failed"]
    return {"sent": figures["sent"], "received": figures["received"], "failed": figures["failed"],
            "pending": figures["pending"], "volume": figures["sent"] + figures["received"],
            "failure_rate": _rate(figures["failed"], outgoing)}


def failures_by_reason(counted, since_day, limit=REASONS_SHOWN):
    """Failed messages by reason, created from `since_day` (a UTC day; the failure rollups are per UTC hour) on."""
    since = datetime.combine(since_day, time.min, tzinfo=dt_timezone.utc)
    rows = across(counted, lambda s: f"""
        SELECT %s, reason, sum(n) FROM (
          SELECT reason, count AS n FROM {s}.analytics_failurehourly WHERE hour >= %s
          UNION ALL
          SELECT new_reason, 1 FROM {s}.analytics_messagecounter WHERE new_reason IS NOT NULL AND hour >= %s
          UNION ALL
          SELECT old_reason, -1 FROM {s}.analytics_messagecounter WHERE old_reason IS NOT NULL AND hour >= %s) f
        GROUP BY 2""", lambda pk: [pk, since, since, since])
    reasons = {}
    for _, reason, n in rows:
        reasons[reason or "(no reason given)"] = reasons.get(reason or "(no reason given)", 0) + int(n or 0)
    ranked = sorted(((r, n) for r, n in reasons.items() if n > 0), key=lambda item: (-item[1], item[0]))
    return [{"reason": reason, "count": n} for reason, n in ranked[:limit]]


def session_states(counted):
    """{tenant pk: {state: count}}."""
    found = {}
    for pk, status, n in across(counted, lambda s: f"""
            SELECT %s, status, count(*) FROM {s}.whatsapp_whatsappsession GROUP BY 2""", lambda pk: [pk]):
        found.setdefault(pk, {})[status] = int(n)
    return found


def _churn_sql(s, group=None):
    drops = ", ".join(f"'{kind}'" for kind in DROPS)
    kinds = ", ".join(f"'{kind}'" for kind in CONNECTION_KINDS)
    key = "" if group is None else f", {group}"
    return f"""
        WITH acts AS (
          SELECT a.session_id, a.kind, a.created_at,
                 a.kind IN ({drops}) AND prev.kind = 'connected' AS dropped
          FROM {s}.whatsapp_sessionactivity a
          LEFT JOIN LATERAL (
            SELECT p.kind FROM {s}.whatsapp_sessionactivity p
            WHERE p.session_id = a.session_id AND p.kind IN ({kinds})
              AND (p.created_at, p.id) < (a.created_at, a.id)
            ORDER BY p.created_at DESC, p.id DESC LIMIT 1) prev ON a.kind IN ({drops})
          WHERE a.created_at >= %s AND a.kind IN ({kinds}))
        """ + (f"""
        SELECT %s, count(*) FILTER (WHERE kind = 'connected'), count(*) FILTER (WHERE dropped),
          (SELECT count(*) FROM (
             SELECT id FROM {s}.whatsapp_whatsappsession WHERE status = 'connected'
             UNION SELECT session_id FROM acts WHERE kind = 'connected' OR dropped) seen)
        FROM acts""" if group is None else f"""
        SELECT %s{key}, count(*) FILTER (WHERE kind = 'connected'), count(*) FILTER (WHERE dropped)
        FROM acts GROUP BY 2""")


def churn(counted, since):
    """{tenant pk: {"connections", "disconnections", "active"}} from `since` on: connections made, drops of a
    connection (a session that was connected reconnecting, disconnected or logged out; the retries that follow a
    drop are not counted again), and sessions connected at some time in the window (connected now, or connected or
    dropped in it)."""
    return {pk: {"connections": int(c), "disconnections": int(d), "active": int(a)}
            for pk, c, d, a in across(counted, _churn_sql, lambda pk: [since, pk])}


def churn_series(counted, since, interval):
    """{hour or day: (connections, disconnections)}."""
    bucket = "date_trunc('hour', created_at, 'UTC')" if interval == "hour" else "(created_at AT TIME ZONE 'UTC')::date"
    found = {}
    for _, key, c, d in across(counted, lambda s: _churn_sql(s, bucket), lambda pk: [since, pk]):
        before = found.get(key, (0, 0))
        found[key] = (before[0] + int(c), before[1] + int(d))
    return found


def disconnect_rate(figures):
    return _rate(figures["disconnections"], figures["active"])


def queued(counted, now):
    """{tenant pk: (messages queued, seconds the oldest has waited or None)} (the queued rows' own index)."""
    return {pk: (int(n), None if age is None else max(float(age), 0.0))
            for pk, n, age in across(counted, lambda s: f"""
                SELECT %s, count(*), EXTRACT(EPOCH FROM %s - min(created_at)) FROM {s}.whatsapp_message
                WHERE status = 'queued'""", lambda pk: [pk, now])}


def rate(counted, now, seconds=RATE_SECONDS):
    """Messages created per minute over the last `seconds`, and in the last minute, by direction."""
    since, minute = now - timedelta(seconds=seconds), now - timedelta(seconds=60)
    totals = {"out": [0, 0], "in": [0, 0]}
    for _, direction, window, last in across(counted, lambda s: f"""
            SELECT %s, direction, count(*), count(*) FILTER (WHERE created_at >= %s) FROM {s}.whatsapp_message
            WHERE created_at >= %s AND created_at <= %s GROUP BY 2""", lambda pk: [pk, minute, since, now]):
        totals.setdefault(direction, [0, 0])
        totals[direction][0] += int(window)
        totals[direction][1] += int(last)
    minutes = seconds / 60
    out, inbound = totals["out"], totals["in"]
    return {"window_seconds": seconds, "per_minute": round((out[0] + inbound[0]) / minutes, 2),
            "sent_per_minute": round(out[0] / minutes, 2), "received_per_minute": round(inbound[0] / minutes, 2),
            "last_minute": {"sent": out[1], "received": inbound[1], "total": out[1] + inbound[1]}}


def webhook_latency(counted, now, hours=WEBHOOK_HOURS):
    """Deliveries of the last hour: how many, and the p50/p95 time of those that succeeded (one percentile over
    every tenant's, so the figure is the platform's, not an average of tenants')."""
    if not counted:
        return {"hours": hours, "count": 0, "succeeded": 0, "p50_ms": None, "p95_ms": None}
    since = now - timedelta(hours=hours)
    parts, params = [], []
    for pk, schema, *_ in counted:
        parts.append(f"(SELECT status, last_duration_ms FROM {connection.ops.quote_name(schema)}"
                     ".whatsapp_webhookdelivery WHERE created_at >= %s)")
        params.append(since)
    with connection.cursor() as cursor:
        cursor.execute(f"""
            SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'),
                   percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY last_duration_ms)
                     FILTER (WHERE status = 'succeeded' AND last_duration_ms IS NOT NULL)
            FROM ({' UNION ALL '.join(parts)}) d""", params)
        count, succeeded, percentiles = cursor.fetchone()
    p50, p95 = percentiles or (None, None)
    return {"hours": hours, "count": int(count), "succeeded": int(succeeded),
            "p50_ms": None if p50 is None else round(float(p50), 1),
            "p95_ms": None if p95 is None else round(float(p95), 1)}


def histogram_quantiles(buckets, quantiles):
    """Quantiles from a Prometheus histogram's cumulative buckets [(upper bound, count)], as PromQL's
    histogram_quantile estimates them (linear within the bucket; the +Inf bucket answers its lower bound)."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if not total:
        return [None for _ in quantiles]
    answers = []
    for q in quantiles:
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in buckets:
            if count >= rank:
                if math.isinf(bound):
                    answers.append(lower_bound)
                elif count == lower_count:
                    answers.append(bound)
                else:
                    answers.append(lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count))
                break
            lower_bound, lower_count = bound, count
    return answers


def histogram_figures(families, name, unit=1.0):
    """{"count", "p50", "p95", "p99"} of the histogram `name` in the collected `families`, every label set summed
    (None where nothing was observed)."""
    buckets, count = {}, 0.0
    for family in families:
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == name + "_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == name + "_count":
                count += sample.value
    p50, p95, p99 = histogram_quantiles(list(buckets.items()), (0.5, 0.95, 0.99))

    def shown(value):
        return None if value is None else round(value * unit, 3)

    return {"count": int(count), "p50": shown(p50), "p95": shown(p95), "p99": shown(p99)}


class Reading:
    """What the overview, the workspaces' table and the performance figures share, read once per request (the
    platform page shows all three): the workspaces counted, their messages, sessions, drops and queues."""

    def __init__(self, now, hours):
        self.now, self.hours = now, hours
        self.counted = tenants()
        self.since = window_start(now, hours)
        self.counts = message_counts(self.counted, self.since)
        self.states = session_states(self.counted)
        self.moves = churn(self.counted, self.since)

    @cached_property
    def waiting(self):
        return queued(self.counted, self.now)


def overview(now, hours, reading=None):
    """GET /api/v1/metrics: the platform's messages, sessions and errors over the window."""
    reading = reading or Reading(now, hours)
    counted, since = reading.counted, reading.since
    messages = message_figures(summed(reading.counts.values()))
    states = {}
    for by_state in reading.states.values():
        for state, n in by_state.items():
            states[state] = states.get(state, 0) + n
    moves = reading.moves
    connections = sum(m["connections"] for m in moves.values())
    disconnections = sum(m["disconnections"] for m in moves.values())
    seen = sum(m["active"] for m in moves.values())
    return {
        "window_hours": hours, "since": since.isoformat(), "generated_at": now.isoformat(),
        "tenants": len(counted),
        "messages": messages,
        "sessions": {"total": sum(states.values()), "active": states.get("connected", 0), "by_state": states,
                     "connections": connections, "disconnections": disconnections,
                     "disconnect_rate": _rate(disconnections, seen)},
        "errors": {"total": messages["failed"], "rate": messages["failure_rate"],
                   "reasons_since": since.date().isoformat(),
                   "by_reason": failures_by_reason(counted, since.date())},
    }


def _tenant_row(row, figures, states, moves, waiting):
    pk, _, name, slug, status = row
    count, oldest = waiting
    return {"id": pk, "name": name, "slug": slug, "status": status, **message_figures(figures),
            "sessions": sum(states.values()), "sessions_active": states.get("connected", 0),
            "disconnections": moves["disconnections"], "queued": count,
            "oldest_queued_seconds": None if oldest is None else round(oldest, 1)}


def _sort_key(sort):
    if sort == "name":
        return lambda row: (row["name"].lower(), row["id"])
    # Rates: a workspace that sent nothing sorts below every rate, whichever the order.
    return lambda row: (row[sort] is not None, row[sort] or 0, -row["id"])


def tenant_table(now, hours, sort="volume", descending=True, reading=None):
    """One row per workspace counted: its messages over the window, failure rate, sessions, disconnections and
    queue, sorted (ties by id)."""
    reading = reading or Reading(now, hours)
    counted, counts, states = reading.counted, reading.counts, reading.states
    moves, waiting = reading.moves, reading.waiting
    rows = [_tenant_row(row, counts.get(row[0], empty_counts()), states.get(row[0], {}),
                        moves.get(row[0], {"disconnections": 0}), waiting.get(row[0], (0, None)))
            for row in counted]
    if sort == "name":
        return sorted(rows, key=_sort_key(sort), reverse=descending)
    with_value = sorted([r for r in rows if r[sort] is not None], key=_sort_key(sort), reverse=descending)
    return with_value + sorted([r for r in rows if r[sort] is None], key=lambda r: r["id"])


def tenant_detail(now, hours, pk):
    """One workspace's row of the table, with its sessions by state and failures by reason; None when no
    counted workspace has this pk."""
    counted = tenants(pk)
    if not counted:
        return None
    since = window_start(now, hours)
    counts, states = message_counts(counted, since), session_states(counted)
    moves, waiting = churn(counted, since), queued(counted, now)
    row = _tenant_row(counted[0], counts.get(pk, empty_counts()), states.get(pk, {}),
                      moves.get(pk, {"disconnections": 0}), waiting.get(pk, (0, None)))
    move = moves.get(pk, {"connections": 0, "disconnections": 0, "active": 0})
    return {**row, "window_hours": hours, "since": since.isoformat(),
            "sessions_by_state": states.get(pk, {}), "connections": move["connections"],
            "disconnect_rate": disconnect_rate(move),
            "failures_by_reason": failures_by_reason(counted, since.date())}


def timeseries(now, metric, interval, points):
    """[{"start", "value"}] of `metric` per UTC hour or day, oldest first, the current one last."""
    counted = tenants()
    if interval == "hour":
        since = floor_hour(now) - timedelta(hours=points - 1)
        starts = [since + timedelta(hours=i) for i in range(points)]
    else:
        since = floor_hour(now).replace(hour=0) - timedelta(days=points - 1)
        starts = [since.date() + timedelta(days=i) for i in range(points)]
    if metric in ("connections", "disconnections"):
        index = 0 if metric == "connections" else 1
        values = {_key(bucket): pair[index] for bucket, pair in churn_series(counted, since, interval).items()}
    else:
        field = {"messages": "volume", "error_rate": "failure_rate"}.get(metric, metric)
        values = {_key(bucket): message_figures(figures)[field]
                  for bucket, figures in message_counts(counted, since, by=interval).items()}
    empty = None if metric == "error_rate" else 0
    return [{"start": start.isoformat(), "value": values.get(_key(start), empty)} for start in starts]


def _key(bucket):
    """An hour (an aware datetime) or a day (a date) as the same text whichever way it was read."""
    return floor_hour(bucket).isoformat() if hasattr(bucket, "hour") else bucket.isoformat()


def performance(now, reading=None):
    """GET /api/v1/metrics/performance: latencies as the processes recorded them since they started (seconds),
    what waits now, and the last hour's webhook delivery times."""
    counted = reading.counted if reading else tenants()
    families = metrics.recorded_families()
    waiting = list((reading.waiting if reading else queued(counted, now)).values())
    ages = [age for _, age in waiting if age is not None]
    default_depth, shared_depth = client().pipeline().llen("default").llen(SHARED_QUEUE).execute()
    return {
        "generated_at": now.isoformat(),
        "accept_seconds": histogram_figures(families, metrics.ACCEPT_LATENCY._name),
        "queued_to_sent_seconds": histogram_figures(families, latency.ACCEPT_TO_SENT._name),
        "sent_to_delivered_seconds": histogram_figures(families, latency.SENT_TO_DELIVERED._name),
        "queue": {"messages_queued": sum(n for n, _ in waiting),
                  "oldest_queued_seconds": round(max(ages), 1) if ages else None,
                  "tasks_waiting": {"default": int(default_depth), SHARED_QUEUE: int(shared_depth)}},
        "webhooks": webhook_latency(counted, now),
    }
