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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.functions import JSONObject
from django.utils import timezone
from django_tenants.utils import schema_context

from core.errors import DomainError
from tenants.models import Tenant
from whatsapp.campaigns import actions as campaigns
from whatsapp.campaigns.models import BroadcastSettings
from whatsapp.conversations.actions import is_group_jid
from whatsapp.messaging import actions as messaging
from whatsapp.messaging.models import Message
from whatsapp.sessions.models import WhatsAppSession
from whatsapp.webhooks import actions as webhooks

from . import actions, matching, schedule
from .models import AutomationLog, Handoff, KeywordRule, Receptionist

log = logging.getLogger(__name__)
Kind = AutomationLog.Kind
NEVER_ANSWERED_SERVERS = ("@broadcast", "@newsletter")  # status updates, broadcast lists, channels
TIME_ZONE_TTL_S = 60
_time_zones = {}  # schema -> (time zone, read at)
# Queues the bot's turn: (schema_name, message_id). The ask_bot task's .delay, set by WhatsappConfig.ready()
# (the task runs whatsapp.automation.bot, which falls back to this module's rules).
ask_bot = None
# Queues the escalation of a handoff request: (schema_name, log_id). The escalate task's .delay, set by
# WhatsappConfig.ready() (the task runs whatsapp.automation.escalation).
escalate = None


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


# --- what automation knows about one inbound message, in one statement ----------------------------------------

@dataclass
class Config:
    """A workspace's automation settings as the engine reads them: kept per schema until they change."""
    receptionists: dict  # scope -> Receptionist
    rules: list  # (enabled keyword rule, its matcher) in the order they are tried
    opt_out_words: frozenset

    def receptionist(self, session):
        return self.receptionists.get(actions.scope_of(session)) or self.receptionists.get("workspace")


_configs = {}  # schema -> (version, Config)


def _table(model):
    return connection.ops.quote_name(model._meta.db_table)


def config_version_sql():
    """One text that changes whenever a receptionist, a keyword rule or the opt-out words change: rows added or
    deleted change the count, and any UPDATE gives the row a new xmin (the transaction that wrote it), so the sum
    moves whoever changed it and however (an action, the admin, a bulk update that leaves updated_at alone)."""
    parts = [f"(SELECT count(*) || '/' || coalesce(sum(xmin::text::bigint), 0) FROM {_table(model)})"
             for model in (Receptionist, KeywordRule, BroadcastSettings)]
    return " || ';' || ".join(parts)


def config(schema_name, version):
    """The schema's Config, read again only when `version` (config_version_sql) moved."""
    cached = _configs.get(schema_name)
    if cached is None or cached[0] != version:
        cached = _configs[schema_name] = (version, Config(
            receptionists={r.scope: r for r in Receptionist.objects.all()},
            rules=[(rule, matching.matcher(rule.match, rule.pattern))
                   for rule in KeywordRule.objects.filter(enabled=True).order_by("priority", "id")],
            opt_out_words=frozenset(campaigns.opt_out_words())))
    return cached[1]


# Cooldowns and the hourly cap look this far back (the longest cooldown a rule or a receptionist may have).
LOOKBACK = timedelta(minutes=actions.MAX_COOLDOWN_MINUTES)
MAX_RECENT = 1000  # the hourly cap keeps a contact far below this within LOOKBACK


@dataclass
class Facts:
    """An inbound message and what deciding its answer needs, read together (facts())."""
    message: Message
    config: Config
    answered: bool = False  # automation already did something about it (a redelivered event)
    own_number: bool = False  # the sender is one of the workspace's numbers
    first: bool = False  # the contact's first message to this number
    handoff_until: datetime | None = None  # a person has the conversation (or the number) until then
    recent: list = field(default_factory=list)  # automatic replies to the chat, newest first: (kind, rule_id, at)

    @property
    def profile(self):
        return self.config.receptionist(self.message.session)

    def replies_since(self, since, **which):
        return sum(1 for kind, rule_id, at in self.recent if at >= since
                   and which.get("kind", kind) == kind and which.get("rule_id", rule_id) == rule_id)


def facts(now, **lookup):
    """Facts of the inbound message found by `lookup` (session_id and provider_message_id, or pk) with the
    schema's Config, in one statement (the config's version rides along), or None when it is not stored."""
    outer_chat = {"session_id": OuterRef("session_id"), "chat_jid": OuterRef("chat_jid")}
    replies = (AutomationLog.objects.filter(**outer_chat, reply__isnull=False, created_at__gte=now - LOOKBACK)
               .order_by("-created_at").values(j=JSONObject(kind="kind", rule_id="rule_id", at="created_at")))
    handoffs = (Handoff.objects.filter(Q(session_id=OuterRef("session_id"), conversation__isnull=True)
                                       | Q(conversation_id=OuterRef("conversation_id")), until__gt=now)
                .order_by("-until").values("until"))
    row = (Message.objects.filter(direction=Message.Direction.IN, **lookup)
           .select_related("session", "conversation")
           .annotate(automation_version=RawSQL(config_version_sql(), ()),
                     automation_answered=Exists(AutomationLog.objects.filter(inbound_id=OuterRef("pk"))),
                     automation_own_number=Exists(WhatsAppSession.objects.exclude(phone="")
                                                  .filter(phone=OuterRef("from_phone"))),
                     automation_earlier=Exists(Message.objects.filter(**outer_chat, direction=Message.Direction.IN,
                                                                      pk__lt=OuterRef("pk"))),
                     automation_handoff=Subquery(handoffs[:1]),
                     automation_recent=ArraySubquery(replies[:MAX_RECENT]))
           .first())
    if row is None:
        return None
    recent = [(r["kind"], r["rule_id"], datetime.fromisoformat(r["at"])) for r in row.automation_recent]
    return Facts(message=row, config=config(connection.schema_name, row.automation_version),
                 answered=row.automation_answered, own_number=row.automation_own_number,
                 first=not row.automation_earlier, handoff_until=row.automation_handoff, recent=recent)


def respond(schema_name, session_id, provider_id, *, now=None):
    """Decide and queue the answer to the session's inbound message `provider_id`; returns the log row or None."""
    now = now or timezone.now()
    found = facts(now, session_id=session_id, provider_message_id=provider_id)
    if found is None or found.answered:  # not stored, or redelivered
        return None
    profile = found.profile
    if profile is None or not profile.enabled:
        return None
    message = found.message
    answer = guard(found, now)
    if answer is None and profile.bot_enabled and profile.bot_url:
        # The bot answers from a worker (it may take BOT_TIMEOUT_MS): never on the host's event thread.
        transaction.on_commit(lambda: ask_bot(schema_name, message.pk))
        return None
    if answer is None:
        answer = decide(found, now, time_zone=profile.time_zone or workspace_time_zone(schema_name))
    if answer is None:
        return None
    return carry_out(message, answer, now)


def guard(found, now):
    """The answer that stops automation here (a skip, or the contact asking for a person), or None to go on."""
    message, profile = found.message, found.profile
    if message.from_phone and found.own_number:
        return Answer(Kind.SKIPPED, detail="own_number: the sender is one of this workspace's numbers")
    if found.handoff_until is not None:
        return Answer(Kind.SKIPPED,
                      detail=f"handoff: a person has this conversation until {found.handoff_until:%H:%M} UTC")
    if message.text and campaigns.normalize_word(message.text) in found.config.opt_out_words:
        return Answer(Kind.SKIPPED, detail="opt_out: an opt-out word, answered by broadcasts' confirmation")
    cap = settings.AUTOREPLY_MAX_PER_CONTACT_PER_HOUR
    if found.replies_since(now - timedelta(hours=1)) >= cap:
        return Answer(Kind.SKIPPED, detail=f"rate_cap: {cap} automatic messages to this contact within the hour")
    text = (message.text or message.caption or "").casefold()
    if text and not is_group_jid(message.chat_jid) and any(
            re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) for word in profile.handoff_keywords or ()):
        return Answer(Kind.HANDOFF, text=profile.handoff_reply, handoff=True, source="handoff keyword",
                      detail="the contact asked for a person")
    return None


def _in_cooldown(found, now, minutes, **which):
    return bool(minutes) and found.replies_since(now - timedelta(minutes=minutes), **which) > 0


def decide(found, now, *, time_zone):
    """The rules' answer (no bot): a keyword rule, the away message, the greeting or the fallback, or None."""
    message, profile = found.message, found.profile
    group = is_group_jid(message.chat_jid)
    text = message.text or message.caption or ""
    if text:
        folded = matching.fold(text)
        for rule, matches in found.config.rules:
            if rule.session_id not in (None, message.session_id) or group and not rule.in_groups \
                    or not matches(text, folded):
                continue
            if _in_cooldown(found, now, rule.cooldown_minutes, rule_id=rule.pk):
                return Answer(Kind.SKIPPED, rule=rule, source=rule.name,
                              detail=f"cooldown: rule '{rule.name}' answered this contact within "
                                     f"{rule.cooldown_minutes} min")
            handoff = rule.action == KeywordRule.Action.HANDOFF
            return Answer(Kind.HANDOFF if handoff else Kind.RULE, text=rule.reply_text, reply_type=rule.reply_type,
                          media_url=rule.media_url, rule=rule, source=rule.name, handoff=handoff)
    if group:
        return None
    is_open = schedule.is_open(profile.schedule, profile.holidays, time_zone, now)
    for kind, text, wanted in ((Kind.AWAY, profile.away_message, not is_open),
                               (Kind.GREETING, profile.greeting, found.first),
                               (Kind.FALLBACK, profile.fallback, True)):
        if wanted and text:
            if kind != Kind.GREETING and _in_cooldown(found, now, profile.cooldown_minutes, kind=kind):
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
            try:  # raises before writing anything: the transaction stays usable for the log row
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
        row = AutomationLog.objects.create(
            session=session, chat_jid=message.chat_jid, conversation=message.conversation,
            contact_id=message.contact_id, inbound=message, reply=reply, kind=answer.kind, rule=answer.rule,
            source=answer.source[:120], detail=detail[:500], created_at=now)
        if answer.handoff and message.conversation is not None and escalate is not None:
            # The people: the escalation contacts by email and Telegram, from a worker once this commits.
            schema_name = connection.schema_name
            transaction.on_commit(lambda: escalate(schema_name, row.pk))
        return row
