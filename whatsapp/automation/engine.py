"""What the receptionist does with an inbound message. Registered with the session host for MESSAGE events after
messaging's applier (WhatsappConfig.ready), so the message is stored when it runs; it never raises into the host.

One inbound message gets at most one automatic answer, chosen in this order: the contact asks for a person (a
handoff keyword), the bot (whatsapp.automation.bot, off the host's thread), a keyword rule (lowest priority first),
the away message outside business hours, the greeting on a contact's first message, the fallback. Loop and ban
safety before any of it (a message the phone itself sends hands the conversation to people): nothing for our own numbers, opt-out words (broadcasts confirm those), status broadcasts,
newsletters, groups (unless a rule says so), messages we sent ourselves, conversations a person has taken over, or
a contact who got AUTOREPLY_MAX_PER_CONTACT_PER_HOUR automatic messages within the hour. Answers go through the sending pipeline
(whatsapp.messaging.actions.queue_automatic: paced, capped, recorded, webhooks fired), each with its log row.
"""
import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max
from django.utils import timezone
from django_tenants.utils import schema_context

from core.errors import DomainError
from tenants.models import Tenant
from whatsapp.campaigns import actions as campaigns
from whatsapp.conversations.actions import is_group_jid
from whatsapp.messaging import actions as messaging
from whatsapp.messaging.models import Message
from whatsapp.sessions.models import WhatsAppSession
from whatsapp.webhooks import actions as webhooks

from . import actions, matching, schedule
from .models import AutomationLog, KeywordRule, Receptionist

log = logging.getLogger(__name__)
Kind = AutomationLog.Kind
NEVER_ANSWERED_SERVERS = ("@broadcast", "@newsletter")  # status updates, broadcast lists, channels
TIME_ZONE_TTL_S = 60
_time_zones = {}  # schema -> (time zone, read at)
# Queues the bot's turn: (schema_name, message_id). The ask_bot task's .delay, set by WhatsappConfig.ready()
# (the task runs whatsapp.automation.bot, which falls back to this module's rules).
ask_bot = None


@dataclass
class Answer:
    kind: str
    text: str = ""
    reply_type: str = "text"
    media_url: str = ""
    rule: KeywordRule | None = None
    source: str = ""
    detail: str = ""
    handoff: bool = False


def on_message(event, now=None):
    """The host's MESSAGE applier: answer the stored inbound message (never raises; returns None)."""
    data = event.data
    chat = str(data.get("chat") or "")
    if not data.get("id") or chat.endswith(NEVER_ANSWERED_SERVERS):
        return None
    schema_name, session_id = event.session_key.split(":", 1)
    try:
        with schema_context(schema_name):
            if data.get("from_me"):
                staff_replied_from_phone(int(session_id), str(data["id"])[:128], chat, now=now)
            else:
                respond(schema_name, int(session_id), str(data["id"])[:128], now=now)
    except Exception:  # automation must never stop the session's events
        log.exception("automation failed for message %s of %s", data.get("id"), event.session_key)
    return None


def staff_replied_from_phone(session_id, provider_id, chat, *, now=None):
    """A message the linked phone sent that we did not send (a person answering on the phone itself): the
    conversation is handed to people, so automation stays silent there while they talk."""
    outgoing = Message.objects.filter(session_id=session_id, direction=Message.Direction.OUT)
    if outgoing.filter(provider_message_id=provider_id).exists() or outgoing.filter(
            chat_jid=chat, status=Message.Status.SENDING).exists():  # ours (its id may not be recorded yet)
        return None
    session = WhatsAppSession.objects.filter(pk=session_id).first()
    conversation = session.conversations.filter(chat_jid=chat).first() if session is not None else None
    profile = receptionist_for(session) if conversation is not None else None
    if profile is None or not profile.enabled:
        return None
    now = now or timezone.now()
    with transaction.atomic():
        actions.set_handoff(None, session, conversation=conversation, on=True, reason="staff_phone", now=now)
        return AutomationLog.objects.create(session=session, chat_jid=chat, conversation=conversation,
                                            contact_id=conversation.contact_id, kind=Kind.HANDOFF,
                                            source="the phone", detail="staff replied from the phone",
                                            created_at=now)


def receptionist_for(session):
    """The number's own receptionist, else the workspace's, else None."""
    rows = {r.scope: r for r in Receptionist.objects.filter(scope__in=[actions.scope_of(session), "workspace"])}
    return rows.get(actions.scope_of(session)) or rows.get("workspace")


def workspace_time_zone(schema_name):
    cached = _time_zones.get(schema_name)
    if cached is None or time.monotonic() - cached[1] > TIME_ZONE_TTL_S:
        zone = Tenant.objects.filter(schema_name=schema_name).values_list("timezone", flat=True).first() or "UTC"
        cached = _time_zones[schema_name] = (zone, time.monotonic())
    return cached[0]


def respond(schema_name, session_id, provider_id, *, now=None):
    """Decide and queue the answer to the session's inbound message `provider_id`; returns the log row or None."""
    now = now or timezone.now()
    message = (Message.objects.filter(session_id=session_id, direction=Message.Direction.IN,
                                      provider_message_id=provider_id)
               .select_related("session", "conversation").first())
    if message is None or AutomationLog.objects.filter(inbound=message).exists():  # not stored, or redelivered
        return None
    profile = receptionist_for(message.session)
    if profile is None or not profile.enabled:
        return None
    answer = guard(profile, message, now)
    if answer is None and profile.bot_enabled and profile.bot_url:
        # The bot answers from a worker (it may take BOT_TIMEOUT_MS): never on the host's event thread.
        transaction.on_commit(lambda: ask_bot(schema_name, message.pk))
        return None
    if answer is None:
        answer = decide(profile, message, now, time_zone=profile.time_zone or workspace_time_zone(schema_name))
    if answer is None:
        return None
    return carry_out(message, answer, now)


def replies_within_hour(message, now):
    return AutomationLog.objects.filter(session_id=message.session_id, chat_jid=message.chat_jid,
                                        reply__isnull=False, created_at__gte=now - timedelta(hours=1)).count()


def guard(profile, message, now):
    """The answer that stops automation here (a skip, or the contact asking for a person), or None to go on."""
    if message.from_phone and WhatsAppSession.objects.filter(phone=message.from_phone).exists():
        return Answer(Kind.SKIPPED, detail="own_number: the sender is one of this workspace's numbers")
    handoff = actions.active_handoff(message.session, message.conversation, now)
    if handoff is not None:
        return Answer(Kind.SKIPPED, detail=f"handoff: a person has this conversation until {handoff.until:%H:%M} UTC")
    if message.text and campaigns.normalize_word(message.text) in campaigns.opt_out_words():
        return Answer(Kind.SKIPPED, detail="opt_out: an opt-out word, answered by broadcasts' confirmation")
    cap = settings.AUTOREPLY_MAX_PER_CONTACT_PER_HOUR
    if replies_within_hour(message, now) >= cap:
        return Answer(Kind.SKIPPED, detail=f"rate_cap: {cap} automatic messages to this contact within the hour")
    text = (message.text or message.caption or "").casefold()
    if text and not is_group_jid(message.chat_jid) and any(
            re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) for word in profile.handoff_keywords or ()):
        return Answer(Kind.HANDOFF, text=profile.handoff_reply, handoff=True, source="handoff keyword",
                      detail="the contact asked for a person")
    return None


def _in_cooldown(message, now, minutes, **which):
    if not minutes:
        return False
    return AutomationLog.objects.filter(session_id=message.session_id, chat_jid=message.chat_jid,
                                        reply__isnull=False, created_at__gte=now - timedelta(minutes=minutes),
                                        **which).exists()


_rules = {}  # schema -> (version, enabled rules in order)


def rules_for(session):
    """The enabled rules of the session (its own and every number's), in the order they are tried. The
    workspace's rules are read once per change (one aggregate says whether they changed): a tenant with hundreds
    of rules does not load them on every inbound message."""
    schema_name = connection.schema_name
    version = tuple(KeywordRule.objects.aggregate(changed=Max("updated_at"), count=Count("id")).values())
    cached = _rules.get(schema_name)
    if cached is None or cached[0] != version:
        cached = _rules[schema_name] = (version, list(KeywordRule.objects.filter(enabled=True)
                                                      .order_by("priority", "id")))
    return [rule for rule in cached[1] if rule.session_id in (None, session.pk)]


def decide(profile, message, now, *, time_zone):
    """The rules' answer (no bot): a keyword rule, the away message, the greeting or the fallback, or None."""
    group = is_group_jid(message.chat_jid)
    text = message.text or message.caption or ""
    if text:
        for rule in rules_for(message.session):
            if group and not rule.in_groups or not matching.matches(rule.match, rule.pattern, text):
                continue
            if _in_cooldown(message, now, rule.cooldown_minutes, rule=rule):
                return Answer(Kind.SKIPPED, rule=rule, source=rule.name,
                              detail=f"cooldown: rule '{rule.name}' answered this contact within "
                                     f"{rule.cooldown_minutes} min")
            handoff = rule.action == KeywordRule.Action.HANDOFF
            return Answer(Kind.HANDOFF if handoff else Kind.RULE, text=rule.reply_text, reply_type=rule.reply_type,
                          media_url=rule.media_url, rule=rule, source=rule.name, handoff=handoff)
    if group:
        return None
    is_open = schedule.is_open(profile.schedule, profile.holidays, time_zone, now)
    first = not Message.objects.filter(session_id=message.session_id, chat_jid=message.chat_jid,
                                       direction=Message.Direction.IN, pk__lt=message.pk).exists()
    for kind, text, wanted in ((Kind.AWAY, profile.away_message, not is_open),
                               (Kind.GREETING, profile.greeting, first),
                               (Kind.FALLBACK, profile.fallback, True)):
        if wanted and text:
            if kind != Kind.GREETING and _in_cooldown(message, now, profile.cooldown_minutes, kind=kind):
                return None
            return Answer(kind, text=text, source=Kind(kind).label)
    return None


def carry_out(message, answer, now):
    """Queue the answer's reply (if it has one) with its log row, and start the handoff it asks for."""
    session = message.session
    with transaction.atomic():
        reply, detail = None, answer.detail
        has_reply = bool(answer.text) or answer.reply_type != "text"
        if has_reply:
            body = {"session": session.name, "to": message.chat_jid, "type": answer.reply_type}
            if answer.reply_type == "text":
                body["text"] = answer.text
            else:
                body.update(media_url=answer.media_url, **({"caption": answer.text} if answer.text else {}))
            try:
                with transaction.atomic():
                    reply = messaging.queue_automatic(body)
            except DomainError as exc:  # a number we may not message, a media URL that fails: logged, skipped
                detail = f"not sent: {exc.code.value}: {exc.message}"[:500]
        if answer.handoff and message.conversation is not None:
            reason = "bot" if answer.source == "bot" else "rule" if answer.rule is not None else "contact_asked"
            row = actions.set_handoff(None, session, conversation=message.conversation, on=True, requested=True,
                                      reason=reason, now=now)
            # The escalation: the tenant's systems (subscribed webhooks) hear that a person is wanted.
            webhooks.emit_event("conversation.handoff_requested", {
                "conversation_id": message.conversation_id, "session": session.name, "chat": message.chat_jid,
                "from": message.from_phone or message.sender_jid, "reason": reason, "message_id": message.pk,
                "text": (message.text or message.caption)[:500], "until": row.until.isoformat()}, now=now)
        return AutomationLog.objects.create(
            session=session, chat_jid=message.chat_jid, conversation=message.conversation,
            contact_id=message.contact_id, inbound=message, reply=reply, kind=answer.kind, rule=answer.rule,
            source=answer.source[:120], detail=detail[:500], created_at=now)
