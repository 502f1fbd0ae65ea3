"""Message rollups: the trigger that counts every change of a message, the fold that adds the counted changes to
the rollups, and the rebuild that recomputes them from messages (analytics.models explains the design).

All of it runs in the current tenant schema (search_path): the trigger function and its table are the schema's
own, so one tenant's messages are never counted in another's rollups.
"""
from django.db import connection, transaction

from .models import ChatMonthly, MessageCounter

# The trigger: one counter row per insert, status change (or a failed message's reason or a media size changing)
# and delete. Hours are UTC buckets (date_trunc's time zone argument: the session's TimeZone never matters).
TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION analytics_count_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO analytics_messagecounter (message_id, session_id, conversation_id, hour, direction, type, chat_jid,
                                          old_status, new_status, old_reason, new_reason, old_bytes, new_bytes)
    VALUES (NEW.id, NEW.session_id, NEW.conversation_id, date_trunc('hour', NEW.created_at, 'UTC'), NEW.direction,
            NEW.type, NEW.chat_jid, NULL, NEW.status, NULL,
            CASE WHEN NEW.status = 'failed' THEN left(NEW.failure_reason, 200) END, 0, COALESCE(NEW.media_size, 0));
    RETURN NULL;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO analytics_messagecounter (message_id, session_id, conversation_id, hour, direction, type, chat_jid,
                                          old_status, new_status, old_reason, new_reason, old_bytes, new_bytes)
    VALUES (NEW.id, NEW.session_id, NEW.conversation_id, date_trunc('hour', NEW.created_at, 'UTC'), NEW.direction,
            NEW.type, NEW.chat_jid, OLD.status, NEW.status,
            CASE WHEN OLD.status = 'failed' THEN left(OLD.failure_reason, 200) END,
            CASE WHEN NEW.status = 'failed' THEN left(NEW.failure_reason, 200) END,
            COALESCE(OLD.media_size, 0), COALESCE(NEW.media_size, 0));
    RETURN NULL;
  ELSE
    INSERT INTO analytics_messagecounter (message_id, session_id, conversation_id, hour, direction, type, chat_jid,
                                          old_status, new_status, old_reason, new_reason, old_bytes, new_bytes)
    VALUES (OLD.id, OLD.session_id, OLD.conversation_id, date_trunc('hour', OLD.created_at, 'UTC'), OLD.direction,
            OLD.type, OLD.chat_jid, OLD.status, NULL,
            CASE WHEN OLD.status = 'failed' THEN left(OLD.failure_reason, 200) END, NULL,
            COALESCE(OLD.media_size, 0), 0);
    RETURN NULL;
  END IF;
END
$$;
DROP TRIGGER IF EXISTS analytics_count_message_insert ON whatsapp_message;
DROP TRIGGER IF EXISTS analytics_count_message_update ON whatsapp_message;
DROP TRIGGER IF EXISTS analytics_count_message_delete ON whatsapp_message;
CREATE TRIGGER analytics_count_message_insert AFTER INSERT ON whatsapp_message
  FOR EACH ROW EXECUTE FUNCTION analytics_count_message();
CREATE TRIGGER analytics_count_message_update AFTER UPDATE OF status, failure_reason, media_size ON whatsapp_message
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                     OR (NEW.status = 'failed' AND OLD.failure_reason IS DISTINCT FROM NEW.failure_reason)
                     OR OLD.media_size IS DISTINCT FROM NEW.media_size)
  EXECUTE FUNCTION analytics_count_message();
CREATE TRIGGER analytics_count_message_delete AFTER DELETE ON whatsapp_message
  FOR EACH ROW EXECUTE FUNCTION analytics_count_message();
-- First responses look back through one conversation's messages.
CREATE INDEX IF NOT EXISTS analytics_msg_conversation_idx ON whatsapp_message (conversation_id, created_at, id);
-- Webhook health reads the last days' deliveries.
CREATE INDEX IF NOT EXISTS analytics_whd_created_idx ON whatsapp_webhookdelivery (created_at);
"""

TRIGGER_REVERSE_SQL = """
DROP TRIGGER IF EXISTS analytics_count_message_insert ON whatsapp_message;
DROP TRIGGER IF EXISTS analytics_count_message_update ON whatsapp_message;
DROP TRIGGER IF EXISTS analytics_count_message_delete ON whatsapp_message;
DROP FUNCTION IF EXISTS analytics_count_message();
DROP INDEX IF EXISTS analytics_msg_conversation_idx;
DROP INDEX IF EXISTS analytics_whd_created_idx;
"""

# Upper bounds (seconds) of the first-response buckets: bucket b holds times from RESPONSE_BUCKETS[b-1] (0 for the
# first) up to RESPONSE_BUCKETS[b]; the last bucket everything from a week on. Postgres' width_bucket numbers them.
RESPONSE_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400, 259200, 604800)
_BUCKETS_SQL = "'{" + ",".join(str(b) for b in RESPONSE_BUCKETS) + "}'::float8[]"

# Chats are rolled up per UTC month (ChatMonthly) and, for the hours within EDGE_HOURS of a UTC month's start or end,
# per hour as well (ChatEdgeHourly): a workspace's month (UTC-14 to UTC+14, its buckets by the local day of their
# start) differs from the UTC month only by such hours, so its top contacts are exact from both.
EDGE_HOURS = 15


def edge_sql(hour):
    """SQL: whether the UTC hour bucket `hour` (a timestamptz expression) is within EDGE_HOURS of its UTC month's
    start or end (month arithmetic on UTC timestamps: the session's TimeZone never matters)."""
    utc, month = f"({hour} AT TIME ZONE 'UTC')", f"date_trunc('month', {hour} AT TIME ZONE 'UTC')"
    return (f"({utc} < {month} + interval '{EDGE_HOURS} hours' "
            f"OR {utc} >= {month} + interval '1 month' - interval '{EDGE_HOURS} hours')")


TRIGGERS = ("analytics_count_message_insert", "analytics_count_message_update", "analytics_count_message_delete")

# The outgoing messages of the touched conversations from their `since` on, each with the time from the first inbound
# message after the outgoing one before it (its first response time), ordered by (created_at, id) as the rebuild's
# window is. A message inserted or deleted at time t changes only the answers after t, so these are all that move.
_RESPONSES_OF_TOUCHED = """
  SELECT m.id, m.session_id, m.conversation_id, m.created_at, date_trunc('hour', m.created_at, 'UTC'),
         EXTRACT(EPOCH FROM m.created_at - fi.first_in)::float8
  FROM analytics_touched t
  CROSS JOIN LATERAL (
    SELECT id, session_id, conversation_id, created_at FROM whatsapp_message
    WHERE conversation_id = t.conversation_id AND created_at >= t.since AND direction = 'out') m
  LEFT JOIN LATERAL (
    SELECT o.created_at, o.id FROM whatsapp_message o
    WHERE o.conversation_id = m.conversation_id AND o.direction = 'out' AND (o.created_at, o.id) < (m.created_at, m.id)
    ORDER BY o.created_at DESC, o.id DESC LIMIT 1) lo ON true
  CROSS JOIN LATERAL (
    SELECT i.created_at AS first_in FROM whatsapp_message i
    WHERE i.conversation_id = m.conversation_id AND i.direction = 'in' AND (i.created_at, i.id) < (m.created_at, m.id)
      AND (i.created_at, i.id) > (COALESCE(lo.created_at, '-infinity'::timestamptz), COALESCE(lo.id, 0))
    ORDER BY i.created_at, i.id LIMIT 1) fi
"""

# One statement: the counter rows committed so far are taken away (rows of transactions still open stay for the
# next fold) and added to every rollup. Each upsert's rows are grouped first, so no row is touched twice.
FOLD_SQL = """
WITH moved AS (DELETE FROM analytics_messagecounter RETURNING *),
changes AS (
  SELECT hour, session_id, direction, type, old_status AS status, -1 AS n, -old_bytes AS bytes
  FROM moved WHERE old_status IS NOT NULL
  UNION ALL
  SELECT hour, session_id, direction, type, new_status, 1, new_bytes FROM moved WHERE new_status IS NOT NULL),
hourly AS (
  INSERT INTO analytics_hourlyrollup AS r (hour, session_id, direction, type, status, count, media_bytes)
  SELECT hour, session_id, direction, type, status, sum(n), sum(bytes) FROM changes
  GROUP BY hour, session_id, direction, type, status ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (hour, session_id, direction, type, status)
  DO UPDATE SET count = r.count + EXCLUDED.count, media_bytes = r.media_bytes + EXCLUDED.media_bytes
  RETURNING 1),
born_or_gone AS (
  SELECT hour, session_id, chat_jid, CASE WHEN direction = 'out' THEN n ELSE 0 END AS sent,
         CASE WHEN direction = 'in' THEN n ELSE 0 END AS received
  FROM (SELECT hour, session_id, chat_jid, direction, CASE WHEN old_status IS NULL THEN 1 ELSE -1 END AS n
        FROM moved WHERE old_status IS NULL OR new_status IS NULL) m),
chats AS (
  INSERT INTO analytics_chatmonthly AS r (month, session_id, chat_jid, sent, received)
  SELECT date_trunc('month', hour AT TIME ZONE 'UTC')::date, session_id, chat_jid, sum(sent), sum(received)
  FROM born_or_gone GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
  ON CONFLICT (month, session_id, chat_jid)
  DO UPDATE SET sent = r.sent + EXCLUDED.sent, received = r.received + EXCLUDED.received
  RETURNING 1),
chat_edges AS (
  INSERT INTO analytics_chatedgehourly AS r (hour, session_id, chat_jid, sent, received)
  SELECT hour, session_id, chat_jid, sum(sent), sum(received)
  FROM born_or_gone WHERE """ + edge_sql("hour") + """ GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
  ON CONFLICT (hour, session_id, chat_jid)
  DO UPDATE SET sent = r.sent + EXCLUDED.sent, received = r.received + EXCLUDED.received
  RETURNING 1),
failures AS (
  INSERT INTO analytics_failurehourly AS r (hour, session_id, reason, count)
  SELECT hour, session_id, reason, sum(n) FROM (
    SELECT hour, session_id, old_reason AS reason, -1 AS n FROM moved WHERE old_reason IS NOT NULL
    UNION ALL
    SELECT hour, session_id, new_reason, 1 FROM moved WHERE new_reason IS NOT NULL) f
  GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
  ON CONFLICT (hour, session_id, reason) DO UPDATE SET count = r.count + EXCLUDED.count
  RETURNING 1),
touched AS (
  INSERT INTO analytics_touched (conversation_id, since)
  SELECT conversation_id, min(hour) FROM moved
  WHERE conversation_id IS NOT NULL AND (old_status IS NULL OR new_status IS NULL) GROUP BY 1
  RETURNING 1)
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM hourly), (SELECT count(*) FROM chats),
       (SELECT count(*) FROM chat_edges), (SELECT count(*) FROM failures), (SELECT count(*) FROM touched)
"""

# Then the first responses of the touched conversations are taken out and computed again (two statements: a row
# deleted and inserted again by one statement is not allowed), their histogram following each.
_HISTOGRAM_UPSERT = """
  INSERT INTO analytics_firstresponsehourly AS r (hour, session_id, bucket, count, seconds_sum)
  SELECT hour, session_id, width_bucket(seconds, """ + _BUCKETS_SQL + """), sum({sign}), sum({sign} * seconds)
  FROM {source} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
  ON CONFLICT (hour, session_id, bucket)
  DO UPDATE SET count = r.count + EXCLUDED.count, seconds_sum = r.seconds_sum + EXCLUDED.seconds_sum
"""
UNANSWER_SQL = """
WITH gone AS (
  DELETE FROM analytics_firstresponse WHERE id IN (
    SELECT r.id FROM analytics_touched t CROSS JOIN LATERAL (
      SELECT id FROM analytics_firstresponse WHERE conversation_id = t.conversation_id AND created_at >= t.since) r)
  RETURNING hour, session_id, seconds)
""" + _HISTOGRAM_UPSERT.replace("{sign}", "-1").replace("{source}", "gone")
ANSWER_SQL = """
WITH fresh AS (
  INSERT INTO analytics_firstresponse (message_id, session_id, conversation_id, created_at, hour, seconds)
  """ + _RESPONSES_OF_TOUCHED + """
  RETURNING hour, session_id, seconds)
""" + _HISTOGRAM_UPSERT.replace("{sign}", "1").replace("{source}", "fresh")
TOUCHED_TABLE_SQL = ("CREATE TEMP TABLE IF NOT EXISTS analytics_touched (conversation_id bigint, since timestamptz) "
                     "ON COMMIT DELETE ROWS")

REBUILD_SQL = """
DELETE FROM analytics_messagecounter;
DELETE FROM analytics_hourlyrollup;
DELETE FROM analytics_chatmonthly;
DELETE FROM analytics_chatedgehourly;
DELETE FROM analytics_failurehourly;
DELETE FROM analytics_firstresponse;
DELETE FROM analytics_firstresponsehourly;
INSERT INTO analytics_hourlyrollup (hour, session_id, direction, type, status, count, media_bytes)
SELECT date_trunc('hour', created_at, 'UTC'), session_id, direction, type, status, count(*),
       COALESCE(sum(media_size), 0)
FROM whatsapp_message GROUP BY 1, 2, 3, 4, 5;
INSERT INTO analytics_chatmonthly (month, session_id, chat_jid, sent, received)
SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date, session_id, chat_jid,
       count(*) FILTER (WHERE direction = 'out'), count(*) FILTER (WHERE direction = 'in')
FROM whatsapp_message GROUP BY 1, 2, 3;
INSERT INTO analytics_chatedgehourly (hour, session_id, chat_jid, sent, received)
SELECT hour, session_id, chat_jid, count(*) FILTER (WHERE direction = 'out'), count(*) FILTER (WHERE direction = 'in')
FROM (SELECT date_trunc('hour', created_at, 'UTC') AS hour, session_id, chat_jid, direction
      FROM whatsapp_message) m
WHERE """ + edge_sql("hour") + """ GROUP BY 1, 2, 3;
INSERT INTO analytics_failurehourly (hour, session_id, reason, count)
SELECT date_trunc('hour', created_at, 'UTC'), session_id, left(failure_reason, 200), count(*)
FROM whatsapp_message WHERE status = 'failed' GROUP BY 1, 2, 3;
INSERT INTO analytics_firstresponse (message_id, session_id, conversation_id, created_at, hour, seconds)
WITH seq AS (
  SELECT id, session_id, conversation_id, direction, created_at,
         count(*) FILTER (WHERE direction = 'out')
           OVER (PARTITION BY conversation_id ORDER BY created_at, id) AS outs
  FROM whatsapp_message WHERE conversation_id IS NOT NULL),
firsts AS (
  SELECT conversation_id, outs, min(created_at) AS first_in FROM seq WHERE direction = 'in' GROUP BY 1, 2)
SELECT s.id, s.session_id, s.conversation_id, s.created_at, date_trunc('hour', s.created_at, 'UTC'),
       EXTRACT(EPOCH FROM s.created_at - f.first_in)::float8
FROM seq s JOIN firsts f ON f.conversation_id = s.conversation_id AND f.outs = s.outs - 1
WHERE s.direction = 'out';
INSERT INTO analytics_firstresponsehourly (hour, session_id, bucket, count, seconds_sum)
SELECT hour, session_id, width_bucket(seconds, """ + _BUCKETS_SQL + """), count(*), sum(seconds)
FROM analytics_firstresponse GROUP BY 1, 2, 3;
"""


def _lock_key(cursor):
    cursor.execute("SELECT hashtext(current_schema() || ':analytics_rollups')")
    return cursor.fetchone()[0]


def fold():
    """Add the counted changes to the rollups, in the current schema. Returns the number of changes folded, or
    None when another fold or a rebuild holds the schema's rollups (it will fold them)."""
    with transaction.atomic(), connection.cursor() as cursor:
        key = _lock_key(cursor)
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
        if not cursor.fetchone()[0]:
            return None
        cursor.execute("SET LOCAL jit = off")  # compiling costs more than these small statements run
        cursor.execute(TOUCHED_TABLE_SQL)
        cursor.execute("DELETE FROM analytics_touched")  # a fold inside a longer transaction starts afresh
        cursor.execute(FOLD_SQL)
        folded = cursor.fetchone()[0]
        if folded:
            cursor.execute(UNANSWER_SQL)
            cursor.execute(ANSWER_SQL)
        return folded


def rebuild():
    """Recompute every rollup of the current schema from its messages. Writes to messages wait meanwhile (their
    changes would be counted twice otherwise); the rollups stay readable."""
    with transaction.atomic(), connection.cursor() as cursor:
        key = _lock_key(cursor)
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
        cursor.execute("LOCK TABLE whatsapp_message IN SHARE MODE")
        cursor.execute(REBUILD_SQL)
        cursor.execute("SELECT coalesce(sum(count), 0) FROM analytics_hourlyrollup")
        return cursor.fetchone()[0]


def set_counting(enabled):
    """Switch the trigger on or off in the current schema (benchmarks measure what counting costs); a schema
    counted without it must be rebuilt."""
    verb = "ENABLE" if enabled else "DISABLE"
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE refuses while deferred checks are pending
        for name in TRIGGERS:
            cursor.execute(f"ALTER TABLE whatsapp_message {verb} TRIGGER {name}")


def erase_chat(erasure):
    """A contact's erasure (whatsapp.conversations.erasure), after its messages went: their deletion is counted like
    any other, so the rollups' numbers follow the messages (what a rebuild from messages would say; they hold no
    personal data). The per-chat monthly rows name the chat (a phone number): folded now, then deleted."""
    fold()
    ChatMonthly.objects.filter(session_id=erasure.session_id, chat_jid__in=erasure.jids).delete()
    # Left only when another fold held the lock: that fold counts them, under no chat.
    MessageCounter.objects.filter(session_id=erasure.session_id, chat_jid__in=erasure.jids).update(chat_jid="")
