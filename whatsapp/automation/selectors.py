"""What the automation API and page show: settings with what they mean now, rules, the log."""
from django.db import connection
from django.utils import timezone

from . import actions, engine, schedule


def _iso(value):
    return value.isoformat() if value else None


def settings_payload(row, *, session=None):
    """A receptionist's settings; for a number without its own, the workspace's (own: false)."""
    zone = row.time_zone or engine.workspace_time_zone(connection.schema_name)
    return {
        "scope": "session" if session is not None else "workspace",
        "session": session.name if session is not None else None,
        "own": row.pk is not None and row.scope == actions.scope_of(session),
        "enabled": row.enabled,
        "time_zone": row.time_zone,
        "effective_time_zone": zone,
        "open_now": schedule.is_open(row.schedule, row.holidays, zone, timezone.now()),
        "schedule": row.schedule,
        "holidays": row.holidays,
        "away_message": row.away_message,
        "greeting": row.greeting,
        "fallback": row.fallback,
        "cooldown_minutes": row.cooldown_minutes,
        "handoff_keywords": row.handoff_keywords,
        "handoff_reply": row.handoff_reply,
        "handoff_minutes": row.handoff_minutes,
        "bot_url": row.bot_url,
        "bot_enabled": row.bot_enabled,
        "bot_secret_set": bool(row.bot_secret),
        "escalation_member_ids": row.escalation_member_ids,
        "escalation_emails": row.escalation_emails,
        "escalation_telegram_chat_ids": row.escalation_telegram_chat_ids,
        "bot_last_error": row.bot_last_error or None,
        "bot_last_error_at": _iso(row.bot_last_error_at),
        "bot_last_ok_at": _iso(row.bot_last_ok_at),
        "updated_at": _iso(row.updated_at) if row.pk else None,
    }


def effective_row(session):
    """The number's own receptionist, else the workspace's (stored or default)."""
    own = actions.settings_row(session)
    return own if own.pk is not None else actions.settings_row(None)


def rule_payload(rule):
    return {
        "id": rule.pk, "session": rule.session.name if rule.session_id else None, "name": rule.name,
        "match": rule.match, "pattern": rule.pattern, "priority": rule.priority, "action": rule.action,
        "reply_type": rule.reply_type, "reply_text": rule.reply_text, "media_url": rule.media_url,
        "cooldown_minutes": rule.cooldown_minutes, "in_groups": rule.in_groups, "enabled": rule.enabled,
        "created_at": _iso(rule.created_at), "updated_at": _iso(rule.updated_at),
    }


def log_payload(row):
    return {
        "id": row.pk, "session": row.session.name, "chat": row.chat_jid, "conversation_id": row.conversation_id,
        "kind": row.kind, "rule_id": row.rule_id, "source": row.source, "detail": row.detail,
        "inbound_message_id": row.inbound_id, "reply_message_id": row.reply_id,
        "reply_status": row.reply.status if row.reply_id else None, "created_at": _iso(row.created_at),
    }


def handoff_payload(row, *, session, conversation=None):
    return {
        "session": session.name, "conversation_id": conversation.pk if conversation is not None else None,
        "on": row is not None, "until": _iso(row.until) if row is not None else None,
        "requested": row.requested if row is not None else False,
    }
