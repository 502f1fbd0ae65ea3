"""What is checked every minute. Each rule gives the incidents that hold now: {key: Incident}. Tenants' figures are
read across schemas in one statement per rule."""
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from analytics import platform
from core import heartbeats
from tenants.models import Tenant

COUNTED_STATUSES = (Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED)
ERROR_RATE_MINUTES = 15
ERROR_RATE_MIN_MESSAGES = 20
DISCONNECT_RATE_MINUTES = 15
DISCONNECT_RATE_MIN_DROPS = 3  # one number dropping once is sessions_down's business, not a platform alert
# A session host is also a Celery worker (both heartbeats, one process): named for what it is, a host, first.
MEMORY_KINDS = ("host", "worker", "web")


@dataclass
class Incident:
    rule: str
    summary: str
    tenant_id: int | None = None
    details: dict = field(default_factory=dict)


def _across(sql_for, params_for):
    tenants = list(Tenant.objects.filter(status__in=COUNTED_STATUSES).values_list("pk", "schema_name"))
    if not tenants:
        return []
    parts, params = [], []
    for pk, schema in tenants:
        parts.append(f"({sql_for(connection.ops.quote_name(schema))})")
        params.extend(params_for(pk))
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        return cursor.fetchall()


def error_rate(now):
    """Outgoing messages of the last 15 minutes that failed, over all tenants, above WHATSAPP_ALERT_ERROR_RATE."""
    since = now - timedelta(minutes=ERROR_RATE_MINUTES)
    rows = _across(lambda s: f"""
        SELECT %s, count(*) FILTER (WHERE status = 'failed'), count(*) FROM {s}.whatsapp_message
        WHERE direction = 'out' AND created_at >= %s""", lambda pk: [pk, since])
    failed, total = sum(r[1] for r in rows), sum(r[2] for r in rows)
    if total >= ERROR_RATE_MIN_MESSAGES and failed / total > settings.WHATSAPP_ALERT_ERROR_RATE:
        return {"error_rate": Incident("error_rate", f"{failed} of {total} messages failed in the last "
                                       f"{ERROR_RATE_MINUTES} minutes ({failed / total:.0%})",
                                       details={"failed": failed, "total": total})}
    return {}


def queue_age(now):
    rows = _across(lambda s: f"""
        SELECT %s, EXTRACT(EPOCH FROM %s - min(created_at)) FROM {s}.whatsapp_message WHERE status = 'queued'""",
                   lambda pk: [pk, now])
    oldest = max((float(age) for _, age in rows if age is not None), default=0)
    if oldest > settings.ALERT_QUEUE_AGE_SECONDS:
        return {"queue_age": Incident("queue_age", f"A message has waited {oldest / 60:.0f} minutes to be sent",
                                      details={"oldest_seconds": round(oldest)})}
    return {}


def sessions_down(now):
    """A session that should run but is disconnected, logged out or in error for longer than
    ALERT_SESSION_DOWN_MINUTES: its tenant's alert."""
    before = now - timedelta(minutes=settings.ALERT_SESSION_DOWN_MINUTES)
    rows = _across(lambda s: f"""
        SELECT %s, id, name, status FROM {s}.whatsapp_whatsappsession
        WHERE should_run AND status IN ('disconnected', 'logged_out', 'error')
          AND COALESCE(last_activity_at, connected_at, created_at) < %s""", lambda pk: [pk, before])
    return {f"session_down:{tenant_id}:{session_id}": Incident(
        "session_down", f"Session {name} is {status.replace('_', ' ')} for more than "
                        f"{settings.ALERT_SESSION_DOWN_MINUTES} minutes", tenant_id,
        {"session": name, "status": status})
        for tenant_id, session_id, name, status in rows}


def webhooks_dead_lettering(now):
    since = now - timedelta(hours=1)
    rows = _across(lambda s: f"""
        SELECT %s, count(*) FROM {s}.whatsapp_webhookdelivery WHERE status = 'dead' AND created_at >= %s
        HAVING count(*) > 0""", lambda pk: [pk, since])
    return {f"webhooks_dead:{tenant_id}": Incident(
        "webhooks_dead", f"{dead} webhook deliveries of the last hour were dead-lettered", tenant_id,
        {"dead": dead}) for tenant_id, dead in rows}


def campaigns_safety_stopped(now):
    """A broadcast that paused itself (whatsapp.campaigns.feeder's safety stops: a number logged out, most of its
    last messages failing, opt-outs above the share): its tenant's alert until someone resumes or cancels it."""
    rows = _across(lambda s: f"""
        SELECT %s, id, name, pause_reason FROM {s}.whatsapp_campaign
        WHERE status = 'paused' AND pause_reason LIKE 'safety stop:%%'""", lambda pk: [pk])
    return {f"campaign_safety_stop:{tenant_id}:{campaign_id}": Incident(
        "campaign_safety_stop", f"Broadcast {name} paused itself: {reason.removeprefix('safety stop: ')}"[:500],
        tenant_id, {"campaign_id": campaign_id, "campaign": name, "reason": reason})
        for tenant_id, campaign_id, name, reason in rows}


def disconnect_rate(now):
    """Connections dropped in the last 15 minutes over the sessions connected at some time in them (every tenant's,
    analytics.platform.churn: a reconnect's retries count once), above WHATSAPP_ALERT_DISCONNECT_RATE, with at
    least DISCONNECT_RATE_MIN_DROPS drops."""
    moves = platform.churn(platform.tenants(), now - timedelta(minutes=DISCONNECT_RATE_MINUTES)).values()
    drops, active = sum(m["disconnections"] for m in moves), sum(m["active"] for m in moves)
    if drops >= DISCONNECT_RATE_MIN_DROPS and active and drops / active > settings.WHATSAPP_ALERT_DISCONNECT_RATE:
        return {"disconnect_rate": Incident(
            "disconnect_rate", f"{drops} connections dropped in the last {DISCONNECT_RATE_MINUTES} minutes, "
                               f"{drops / active:.0%} of the {active} sessions connected",
            details={"disconnections": drops, "active": active, "rate": round(drops / active, 4)})}
    return {}


def memory(now):
    """A worker, session host or web process whose resident memory (or one of its pool processes'), from the
    heartbeat it writes (core.heartbeats), is over WHATSAPP_ALERT_MEMORY_MB: one incident per process, resolved
    when it shrinks or its heartbeat goes (it stopped)."""
    limit = settings.WHATSAPP_ALERT_MEMORY_MB
    found = {}
    for kind in MEMORY_KINDS:
        for beat in heartbeats.alive(kind):
            sizes = [beat.get("rss_mb"), *(beat.get("children_rss_mb") or {}).values()]
            largest = max((float(size) for size in sizes if size is not None), default=None)
            process = f"{beat.get('host') or '?'}:{beat.get('pid') or beat['name']}"
            if largest is None or largest <= limit or f"memory:{process}" in found:
                continue
            found[f"memory:{process}"] = Incident(
                "memory", f"The {kind} process {process} uses {largest:.0f} MB of memory (over {limit} MB)",
                details={"kind": kind, "name": beat["name"], "rss_mb": beat.get("rss_mb"),
                         "children_rss_mb": beat.get("children_rss_mb") or {}, "largest_mb": largest,
                         "limit_mb": limit})
    return found


RULES = [error_rate, queue_age, sessions_down, webhooks_dead_lettering, campaigns_safety_stopped, disconnect_rate,
         memory]
# Rules of the apps above this one (which this app cannot import), added by their AppConfig.ready().
REGISTERED = []


def register(rule):
    """Check `rule(now) -> {key: Incident}` with the others every minute (and whenever check() is asked)."""
    if rule not in REGISTERED:
        REGISTERED.append(rule)


def incidents(now=None):
    now = now or timezone.now()
    found = {}
    for rule in [*RULES, *REGISTERED]:
        found.update(rule(now))
    return found
