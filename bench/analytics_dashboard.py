"""Analytics from rollups against counting messages at request time, in the same run.

A tenant with N messages over 90 days (5 sessions, 5,000 conversations; made with generate_series, not the API,
with the counting trigger off), then:
- rebuild: `rebuild_analytics`' recomputation of every rollup from the messages (seconds);
- fold: the rollup job (analytics.rollups.fold) folding the counter rows of K messages inserted and moved through
  sent → delivered → read with the trigger on (rows per second), and what the trigger costs those writes: the
  same inserts and updates with the trigger off and on, alternating, R rounds (medians; trigger_cost_pct);
- GET /api/v1/analytics/dashboard and /api/v1/analytics/trends?days=90 through Django's whole stack (API key,
  middleware, DRF, envelope), REQUESTS each: p50/p95;
- the same figures computed naively (GROUP BY over messages: today/week/month, 30-day rates, failures, heatmap,
  top contacts, first responses; trends per day over 90 days), NAIVE_REQUESTS each: p50/p95, and the ratio.

ANALYTICS_BENCH_MESSAGES (or argv[1]) sets N (default 10,000,000), ANALYTICS_BENCH_REQUESTS (200),
ANALYTICS_BENCH_NAIVE_REQUESTS (10), ANALYTICS_BENCH_FOLD_MESSAGES K (20,000), ANALYTICS_BENCH_ROUNDS R (3).
Last line: one JSON object.
"""
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_database, emit, quiet_logging  # noqa: E402

MESSAGES = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("ANALYTICS_BENCH_MESSAGES", "10000000"))
REQUESTS = int(os.environ.get("ANALYTICS_BENCH_REQUESTS", "200"))
NAIVE_REQUESTS = int(os.environ.get("ANALYTICS_BENCH_NAIVE_REQUESTS", "10"))
FOLD_MESSAGES = int(os.environ.get("ANALYTICS_BENCH_FOLD_MESSAGES", "20000"))
ROUNDS = int(os.environ.get("ANALYTICS_BENCH_ROUNDS", "3"))
SCHEMA = "bench_analytics"
TZ = "Europe/Berlin"
SESSIONS, CHATS_PER_SESSION = 5, 1000

MESSAGES_SQL = """
INSERT INTO whatsapp_message (session_id, direction, to_phone, from_phone, chat_jid, sender_jid, sender_unresolved,
  type, text, caption, media_url, media_file, media_mimetype, media_size, media_filename, media_error,
  location_name, reply_to, reaction, conversation_id, status, failure_reason, provider_message_id, request_hash,
  attempts, paced_reason, created_at)
SELECT c.session_id, d.direction, '', '', c.chat_jid, '', false,
  CASE WHEN r.t < 0.9 THEN 'text' ELSE 'image' END, 'hello', '', '', '', '',
  CASE WHEN r.t < 0.9 THEN NULL ELSE 20000 + (r.t * 1000)::int END, '', '', '', '', '', c.id,
  CASE WHEN d.direction = 'in' THEN 'received' WHEN r.s < 0.02 THEN 'failed' WHEN r.s < 0.1 THEN 'sent'
       WHEN r.s < 0.5 THEN 'delivered' ELSE 'read' END,
  CASE WHEN d.direction = 'out' AND r.s < 0.02 THEN 'reason ' || (r.s * 250)::int ELSE '' END, '', '', 1, '',
  %(until)s - r.age * interval '90 days'
FROM (SELECT g, random() AS t, random() AS s, random() AS age, random() AS dir,
             1 + (random() * %(chats)s)::int %% %(chats)s AS conversation FROM generate_series(1, %(n)s) g) r
JOIN whatsapp_conversation c ON c.id = r.conversation
CROSS JOIN LATERAL (SELECT CASE WHEN r.dir < 0.5 THEN 'out' ELSE 'in' END AS direction) d
"""

# What the pipeline writes for K messages: queued rows (then moved sent → delivered → read by updates).
FRESH_SQL = """
INSERT INTO whatsapp_message (session_id, direction, to_phone, from_phone, chat_jid, sender_jid, sender_unresolved,
  type, text, caption, media_url, media_file, media_mimetype, media_size, media_filename, media_error,
  location_name, reply_to, reaction, conversation_id, status, failure_reason, provider_message_id, request_hash,
  attempts, paced_reason, created_at)
SELECT c.session_id, 'out', '', '', c.chat_jid, '', false, 'text', 'hello', '', '', '', '', NULL, '', '', '', '',
  '', c.id, 'queued', '', '', '', 0, '', now()
FROM generate_series(1, %(n)s) g JOIN whatsapp_conversation c ON c.id = 1 + g %% %(chats)s
"""

NAIVE_DASHBOARD = [
    # today / week / month and 30-day rates
    """SELECT (created_at AT TIME ZONE %(tz)s)::date, direction, status, count(*) FROM whatsapp_message
       WHERE created_at >= %(month)s GROUP BY 1, 2, 3""",
    """SELECT left(failure_reason, 200), count(*) FROM whatsapp_message WHERE status = 'failed'
       AND created_at >= %(month)s GROUP BY 1 ORDER BY 2 DESC LIMIT 10""",
    """SELECT extract(isodow FROM created_at AT TIME ZONE %(tz)s), extract(hour FROM created_at AT TIME ZONE %(tz)s),
       direction, count(*) FROM whatsapp_message WHERE created_at >= %(month)s GROUP BY 1, 2, 3""",
    """SELECT chat_jid, count(*) FROM whatsapp_message WHERE created_at >= %(month)s GROUP BY 1
       ORDER BY 2 DESC LIMIT 10""",
    """WITH seq AS (SELECT id, conversation_id, direction, created_at, count(*) FILTER (WHERE direction = 'out')
         OVER (PARTITION BY conversation_id ORDER BY created_at, id) AS outs FROM whatsapp_message
         WHERE created_at >= %(month)s),
       firsts AS (SELECT conversation_id, outs, min(created_at) AS first_in FROM seq WHERE direction = 'in'
         GROUP BY 1, 2)
       SELECT avg(EXTRACT(EPOCH FROM s.created_at - f.first_in)) FROM seq s
       JOIN firsts f ON f.conversation_id = s.conversation_id AND f.outs = s.outs - 1 WHERE s.direction = 'out'""",
]
NAIVE_TRENDS = """SELECT (created_at AT TIME ZONE %(tz)s)::date, direction, status, count(*) FROM whatsapp_message
                  WHERE created_at >= %(since)s GROUP BY 1, 2, 3"""


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ms(seconds):
    return round(seconds * 1000, 1)


def timed(func, times):
    out = []
    for _ in range(times):
        started = time.perf_counter()
        func()
        out.append(time.perf_counter() - started)
    return out


def main():
    quiet_logging()
    with bench_database():
        from datetime import timedelta

        from django.db import connection, transaction
        from django.test import Client
        from django.utils import timezone
        from django_tenants.utils import schema_context

        from accounts.actions import create_api_key
        from accounts.models import Membership, User
        from analytics import rollups
        from tenants.models import Plan, Tenant
        from tenants.plans import seed_plans
        from tenants.pool import create_and_migrate_schema
        from whatsapp.conversations.models import Conversation
        from whatsapp.sessions.models import WhatsAppSession

        seed_plans(Plan)
        started = time.perf_counter()
        create_and_migrate_schema(SCHEMA)
        connection.set_schema_to_public()
        now = timezone.now()
        tenant = Tenant.objects.create(name="Bench", slug="bench", schema_name=SCHEMA, status=Tenant.Status.ACTIVE,
                                       plan=Plan.objects.get(code="enterprise"), approved_at=now, timezone=TZ,
                                       trial_ends_at=now + timedelta(days=30))
        user = User.objects.create_user(email="owner@bench.test", password="x" * 20)
        Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.OWNER)
        _, key = create_api_key(user=user, tenant=tenant, name="bench")
        print(f"tenant schema migrated in {time.perf_counter() - started:.1f} s")

        with schema_context(SCHEMA), connection.cursor() as cursor:
            sessions = [WhatsAppSession.objects.create(name=f"desk-{i}", phone=f"+1415555000{i}", should_run=False,
                                                       status=WhatsAppSession.Status.CONNECTED)
                        for i in range(1, SESSIONS + 1)]
            Conversation.objects.bulk_create(
                Conversation(session=session, chat_jid=f"{14150000000 + c}@s.whatsapp.net")
                for session in sessions for c in range(1, CHATS_PER_SESSION + 1))
            rollups.set_counting(False)
            started = time.perf_counter()
            step = 1_000_000
            for offset in range(0, MESSAGES, step):
                cursor.execute(MESSAGES_SQL, {"until": now - timedelta(minutes=5), "n": min(step, MESSAGES - offset),
                                              "chats": SESSIONS * CHATS_PER_SESSION})
            cursor.execute("ANALYZE whatsapp_message")
            print(f"{MESSAGES:,} messages over 90 days made in {time.perf_counter() - started:.1f} s")
            rollups.set_counting(True)

            started = time.perf_counter()
            rollups.rebuild()
            rebuild_s = time.perf_counter() - started
            cursor.execute("ANALYZE")
            cursor.execute("SELECT count(*) FROM analytics_hourlyrollup")
            print(f"rebuild: every rollup recomputed from {MESSAGES:,} messages in {rebuild_s:.1f} s "
                  f"({cursor.fetchone()[0]:,} hourly rows)")

            # The trigger's cost on the pipeline's writes, and the fold of what it counted.
            def writes():
                cursor.execute("SELECT coalesce(max(id), 0) FROM whatsapp_message")
                last = cursor.fetchone()[0]
                cursor.execute(FRESH_SQL, {"n": FOLD_MESSAGES, "chats": SESSIONS * CHATS_PER_SESSION})
                for status in ("sent", "delivered", "read"):
                    cursor.execute("UPDATE whatsapp_message SET status = %s WHERE id > %s", [status, last])

            off, on, folds = [], [], []
            for round_number in range(ROUNDS):
                for enabled in ((False, True) if round_number % 2 == 0 else (True, False)):
                    rollups.set_counting(enabled)
                    started = time.perf_counter()
                    with transaction.atomic():
                        writes()
                    (on if enabled else off).append(time.perf_counter() - started)
                    if enabled:
                        cursor.execute("SELECT count(*) FROM analytics_messagecounter")
                        counted = cursor.fetchone()[0]
                        started = time.perf_counter()
                        rollups.fold()
                        folds.append((counted, time.perf_counter() - started))
            rollups.set_counting(True)
            rollups.rebuild()  # the rounds with the trigger off were not counted
            trigger_cost = (statistics.median(on) / statistics.median(off) - 1) * 100
            fold_rate = statistics.median(c / s for c, s in folds)
            print(f"writes of {FOLD_MESSAGES:,} messages (insert, then sent, delivered, read): trigger off "
                  f"{ms(statistics.median(off))} ms, on {ms(statistics.median(on))} ms: +{trigger_cost:.1f}%")
            print(f"fold: {statistics.median(c for c, _ in folds):,.0f} counter rows in "
                  f"{ms(statistics.median(s for _, s in folds))} ms ({fold_rate:,.0f} rows/s)")

        client = Client()
        headers = {"HTTP_AUTHORIZATION": f"Bearer {key}", "HTTP_HOST": "localhost", "secure": True}

        def get(url):
            response = client.get(url, **headers)
            assert response.status_code == 200, response.content[:300]

        get("/api/v1/analytics/dashboard")
        from analytics import selectors

        with schema_context(SCHEMA):
            zone = selectors.zone_of(tenant)
            parts = {"message_stats": lambda: selectors.message_stats(zone),
                     "hourly_activity": lambda: selectors.hourly_activity(zone),
                     "top_contacts": lambda: selectors.top_contacts(zone),
                     "conversation_stats": lambda: selectors.conversation_stats(zone),
                     "session_stats": selectors.session_stats,
                     "webhook_health": selectors.webhook_health}
            print("dashboard parts (median of 5): " + ", ".join(
                f"{name} {ms(statistics.median(timed(part, 5)))} ms" for name, part in parts.items()))
        dashboard = timed(lambda: get("/api/v1/analytics/dashboard"), REQUESTS)
        trends = timed(lambda: get("/api/v1/analytics/trends?days=90"), REQUESTS)

        zone_now = timezone.now()
        params = {"tz": TZ, "month": zone_now - timedelta(days=30), "since": zone_now - timedelta(days=90)}
        with schema_context(SCHEMA), connection.cursor() as cursor:
            def naive_dashboard():
                for sql in NAIVE_DASHBOARD:
                    cursor.execute(sql, params)
                    cursor.fetchall()

            def naive_trends():
                cursor.execute(NAIVE_TRENDS, params)
                cursor.fetchall()

            naive_dashboard()
            naive = timed(naive_dashboard, NAIVE_REQUESTS)
            naive_trend = timed(naive_trends, NAIVE_REQUESTS)
        for name, values in (("dashboard (rollups)", dashboard), ("trends?days=90 (rollups)", trends),
                             ("dashboard (naive GROUP BY)", naive), ("trends 90 days (naive)", naive_trend)):
            print(f"{name}: p50 {ms(pct(values, 0.5))} ms, p95 {ms(pct(values, 0.95))} ms over {len(values)}")
        emit({"bench": "analytics_dashboard", "messages": MESSAGES,
              "dashboard_p50_ms": ms(pct(dashboard, 0.5)), "dashboard_p95_ms": ms(pct(dashboard, 0.95)),
              "trends_p50_ms": ms(pct(trends, 0.5)), "trends_p95_ms": ms(pct(trends, 0.95)),
              "naive_p50_ms": ms(pct(naive, 0.5)), "naive_p95_ms": ms(pct(naive, 0.95)),
              "naive_trends_p95_ms": ms(pct(naive_trend, 0.95)),
              "ratio": round(pct(naive, 0.5) / pct(dashboard, 0.5), 1),
              "rebuild_s": round(rebuild_s, 1), "fold_rows_per_s": round(fold_rate),
              "trigger_cost_pct": round(trigger_cost, 1)})


if __name__ == "__main__":
    main()
