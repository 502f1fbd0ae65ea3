"""Configuring the receptionist (whatsapp.automation): the workspace's or a number's settings, keyword rules, the
handoff switch. Each action validates first (400 with a code, nothing written), then changes rows and writes its
audit row in one transaction. What happens on an inbound message is whatsapp.automation.engine's."""
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Membership
from audit import actions as audit
from billing import entitlements
from core import telegram
from core.errors import CommonError, DomainError
from core.net import TargetError, check_target
from whatsapp.webhooks import delivery as wire

from . import matching, schedule
from .errors import AutomationError
from .models import AutomationLog, Handoff, KeywordRule, Receptionist

MAX_TEXT = 4096
MAX_RULES = 500
MAX_KEYWORDS = 20
MAX_COOLDOWN_MINUTES = 7 * 24 * 60
MAX_HANDOFF_MINUTES = 7 * 24 * 60
TEXT_FIELDS = ("away_message", "greeting", "fallback", "handoff_reply")
ESCALATION_FIELDS = ("escalation_member_ids", "escalation_emails", "escalation_telegram_chat_ids")
MAX_ESCALATION_CONTACTS = 20  # of each kind
SETTINGS_FIELDS = ("enabled", "time_zone", "schedule", "holidays", *TEXT_FIELDS, "cooldown_minutes",
                   "handoff_keywords", "handoff_minutes", "bot_url", "bot_enabled", *ESCALATION_FIELDS)
RULE_FIELDS = ("session", "name", "match", "pattern", "priority", "action", "reply_type", "reply_text", "media_url",
               "cooldown_minutes", "in_groups", "enabled")


def scope_of(session):
    return f"session:{session.pk}" if session is not None else "workspace"


def settings_row(session=None):
    """The stored receptionist of the number (or of the workspace, session None), or an unsaved default."""
    return Receptionist.objects.filter(scope=scope_of(session)).first() or Receptionist(
        session=session, scope=scope_of(session), handoff_keywords=["human"])


def _snapshot(row):
    return {name: getattr(row, name) for name in SETTINGS_FIELDS}


def _whole(name, value, high):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise DomainError(AutomationError.INVALID_RULE, f"{name} must be a whole number from 0 to {high}.",
                          {"field": name})
    return value


def _text(name, value):
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise DomainError(AutomationError.INVALID_RULE, f"{name} is text of at most {MAX_TEXT} characters.",
                          {"field": name})
    return value.strip()


def check_bot_url(url):
    """400 invalid_url / private_target / unresolvable_host for a bot URL we would not call."""
    try:
        check_target(url)
    except TargetError as exc:
        raise DomainError(exc.code, exc.message, {"bot_url": url}) from exc


def _escalation_list(name, value):
    """A list of member ids, email addresses or Telegram chat ids, deduplicated; 400 invalid_escalation."""
    if not isinstance(value, list) or len(value) > MAX_ESCALATION_CONTACTS:
        raise DomainError(AutomationError.INVALID_ESCALATION,
                          f"{name} is a list of at most {MAX_ESCALATION_CONTACTS}.", {"field": name})
    cleaned = []
    for item in value:
        if name == "escalation_member_ids":
            good = isinstance(item, int) and not isinstance(item, bool) and 0 < item < 2**31
        elif name == "escalation_emails":
            item = item.strip().lower() if isinstance(item, str) else item
            try:
                validate_email(item)
                good = len(item) <= 254
            except ValidationError:
                good = False
        else:
            item = item.strip() if isinstance(item, str) else item
            good = isinstance(item, str) and bool(telegram.CHAT_ID_RE.match(item))
        if not good:
            what = {"escalation_member_ids": "a member id", "escalation_emails": "an email address",
                    "escalation_telegram_chat_ids": "a Telegram chat id (digits, or @channel)"}[name]
            raise DomainError(AutomationError.INVALID_ESCALATION, f"'{str(item)[:60]}' is not {what}.",
                              {"field": name, "value": str(item)[:60]})
        if item not in cleaned:
            cleaned.append(item)
    return cleaned


def check_escalation_members(tenant, member_ids):
    """404 not_found for a member id that is not one of this workspace's members (another workspace's too)."""
    if not member_ids:
        return
    known = set(Membership.objects.filter(tenant=tenant, pk__in=member_ids).values_list("pk", flat=True))
    unknown = [pk for pk in member_ids if pk not in known]
    if unknown:
        raise DomainError(CommonError.NOT_FOUND, "No such member in this workspace.", {"member_id": unknown[0]})


def clean_settings(changes):
    """`changes` (any of SETTINGS_FIELDS) checked and normalised, or 400 with a code."""
    unknown = sorted(set(changes) - set(SETTINGS_FIELDS))
    if unknown:
        raise DomainError(AutomationError.INVALID_RULE, f"Unknown field: {', '.join(unknown)}.", {"fields": unknown})
    cleaned = {}
    for name, value in changes.items():
        if name in ("enabled", "bot_enabled"):
            if not isinstance(value, bool):
                raise DomainError(AutomationError.INVALID_RULE, f"{name} is true or false.", {"field": name})
            cleaned[name] = value
        elif name == "time_zone":
            cleaned[name] = schedule.check_time_zone(_text(name, value or ""))
        elif name == "schedule":
            cleaned[name] = schedule.clean_schedule(value)
        elif name == "holidays":
            cleaned[name] = schedule.clean_holidays(value)
        elif name in TEXT_FIELDS:
            cleaned[name] = _text(name, value if value is not None else "")
        elif name == "cooldown_minutes":
            cleaned[name] = _whole(name, value, MAX_COOLDOWN_MINUTES)
        elif name == "handoff_minutes":
            cleaned[name] = _whole(name, value, MAX_HANDOFF_MINUTES)
        elif name == "handoff_keywords":
            if not isinstance(value, list) or len(value) > MAX_KEYWORDS or not all(
                    isinstance(k, str) and 0 < len(k.strip()) <= 60 for k in value):
                raise DomainError(AutomationError.INVALID_RULE, f"handoff_keywords is a list of at most "
                                  f"{MAX_KEYWORDS} words of 1 to 60 characters.", {"field": name})
            cleaned[name] = list(dict.fromkeys(k.strip().casefold() for k in value))
        elif name in ESCALATION_FIELDS:
            cleaned[name] = _escalation_list(name, value)
        elif name == "bot_url":
            url = (value or "").strip()
            if url:
                try:
                    check_target(url)
                except TargetError as exc:
                    raise DomainError(exc.code, exc.message, {"bot_url": url}) from exc
            cleaned[name] = url
    return cleaned


def update_settings(tenant, *, session=None, acting_user, changes):
    """Change the workspace's receptionist (session None) or the number's own (made on its first change)."""
    cleaned = clean_settings(changes)
    check_escalation_members(tenant, cleaned.get("escalation_member_ids"))
    entitlements.require_write(tenant)
    with transaction.atomic():
        row = Receptionist.objects.select_for_update().filter(scope=scope_of(session)).first()
        created = row is None
        if created:
            row = settings_row(session)
        before = {} if created else _snapshot(row)
        for name, value in cleaned.items():
            setattr(row, name, value)
        if row.bot_url and not row.bot_secret:
            row.bot_secret = wire.encrypt_secret(wire.new_secret())
        if row.bot_enabled and not row.bot_url:
            raise DomainError(AutomationError.INVALID_BOT_URL, "Give the bot's URL before turning the bot on.",
                              {"field": "bot_url"})
        row.updated_at = timezone.now()
        row.save()
        audit.record("whatsapp.automation_updated", actor=acting_user, target=row, before=before,
                     after=_snapshot(row), tenant=tenant)
    return row


def reset_session_settings(tenant, session, *, acting_user):
    """The number goes back to the workspace's receptionist."""
    entitlements.require_write(tenant)
    with transaction.atomic():
        row = Receptionist.objects.filter(scope=scope_of(session)).first()
        if row is not None:
            audit.record("whatsapp.automation_reset", actor=acting_user, target=row, before=_snapshot(row),
                         tenant=tenant)
            row.delete()


def rotate_bot_secret(tenant, *, session=None, acting_user):
    """A new signing secret for the bot webhook; returns (row, secret) — the secret is shown this once."""
    entitlements.require_write(tenant)
    secret = wire.new_secret()
    with transaction.atomic():
        row = Receptionist.objects.select_for_update().filter(scope=scope_of(session)).first()
        if row is None:
            row = settings_row(session)
        row.bot_secret = wire.encrypt_secret(secret)
        row.updated_at = timezone.now()
        row.save()
        audit.record("whatsapp.automation_bot_secret_rotated", actor=acting_user, target=row, tenant=tenant)
    return row, secret


# --- keyword rules --------------------------------------------------------------------------------------------------


def _rule_snapshot(rule):
    return {name: (rule.session_id if name == "session" else getattr(rule, name)) for name in RULE_FIELDS}


def clean_rule(fields, *, rule=None):
    """`fields` of a new rule (rule None) or changes to `rule`, checked as the rule they make; 400 otherwise."""
    unknown = sorted(set(fields) - set(RULE_FIELDS))
    if unknown:
        raise DomainError(AutomationError.INVALID_RULE, f"Unknown field: {', '.join(unknown)}.", {"fields": unknown})
    merged = {**(_rule_snapshot(rule) if rule is not None else {}), **fields}
    merged.pop("session", None)
    name = merged.get("name")
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 120:
        raise DomainError(AutomationError.INVALID_RULE, "name is text of 1 to 120 characters.", {"field": "name"})
    match = merged.get("match", KeywordRule.Match.CONTAINS)
    if match not in KeywordRule.Match.values:
        raise DomainError(AutomationError.INVALID_RULE, f"match is one of {', '.join(KeywordRule.Match.values)}.",
                          {"field": "match"})
    pattern = merged.get("pattern")
    if not isinstance(pattern, str) or not 0 < len(pattern.strip()) <= 500:
        raise DomainError(AutomationError.INVALID_PATTERN, "pattern is text of 1 to 500 characters.",
                          {"field": "pattern"})
    if match == KeywordRule.Match.REGEX:
        matching.compile_pattern(pattern)
    action = merged.get("action", KeywordRule.Action.REPLY)
    if action not in KeywordRule.Action.values:
        raise DomainError(AutomationError.INVALID_RULE, f"action is one of {', '.join(KeywordRule.Action.values)}.",
                          {"field": "action"})
    reply_type = merged.get("reply_type", KeywordRule.ReplyType.TEXT)
    if reply_type not in KeywordRule.ReplyType.values:
        raise DomainError(AutomationError.INVALID_RULE,
                          f"reply_type is one of {', '.join(KeywordRule.ReplyType.values)}.", {"field": "reply_type"})
    reply_text = _text("reply_text", merged.get("reply_text") or "")
    media_url = (merged.get("media_url") or "").strip()
    if reply_type == KeywordRule.ReplyType.TEXT:
        if media_url:
            raise DomainError(AutomationError.INVALID_RULE, "A text reply carries no media_url.",
                              {"field": "media_url"})
        if action == KeywordRule.Action.REPLY and not reply_text:
            raise DomainError(AutomationError.INVALID_RULE, "A text reply needs reply_text.", {"field": "reply_text"})
    else:
        if not media_url:
            raise DomainError(AutomationError.INVALID_RULE, f"An {reply_type} reply needs media_url.",
                              {"field": "media_url"})
        try:
            check_target(media_url, resolve=False)
        except TargetError as exc:
            raise DomainError(exc.code, exc.message, {"media_url": media_url}) from exc
    cleaned = {"name": name.strip(), "match": match, "pattern": pattern.strip() if match != "regex" else pattern,
               "action": action, "reply_type": reply_type, "reply_text": reply_text, "media_url": media_url}
    for field, high in (("priority", 1_000_000), ("cooldown_minutes", MAX_COOLDOWN_MINUTES)):
        if field in merged:
            cleaned[field] = _whole(field, merged[field], high)
    for field in ("in_groups", "enabled"):
        if field in merged:
            if not isinstance(merged[field], bool):
                raise DomainError(AutomationError.INVALID_RULE, f"{field} is true or false.", {"field": field})
            cleaned[field] = merged[field]
    if "session" in fields:
        cleaned["session"] = fields["session"]
    return cleaned


def create_rule(tenant, *, acting_user, fields):
    cleaned = clean_rule(fields)
    entitlements.require_write(tenant)
    with transaction.atomic():
        if KeywordRule.objects.select_for_update().count() >= MAX_RULES:
            raise DomainError(AutomationError.TOO_MANY_RULES, f"A workspace has at most {MAX_RULES} keyword rules.",
                              {"max": MAX_RULES})
        rule = KeywordRule.objects.create(**cleaned)
        audit.record("whatsapp.automation_rule_created", actor=acting_user, target=rule, after=_rule_snapshot(rule),
                     tenant=tenant)
    return rule


def update_rule(tenant, rule, *, acting_user, changes):
    cleaned = clean_rule(changes, rule=rule)
    entitlements.require_write(tenant)
    with transaction.atomic():
        before = _rule_snapshot(rule)
        for name, value in cleaned.items():
            setattr(rule, name, value)
        rule.updated_at = timezone.now()
        rule.save()
        audit.record("whatsapp.automation_rule_updated", actor=acting_user, target=rule, before=before,
                     after=_rule_snapshot(rule), tenant=tenant)
    return rule


def delete_rule(tenant, rule, *, acting_user):
    entitlements.require_write(tenant)
    with transaction.atomic():
        audit.record("whatsapp.automation_rule_deleted", actor=acting_user, target=rule, before=_rule_snapshot(rule),
                     tenant=tenant)
        rule.delete()


# --- handoff ----------------------------------------------------------------------------------------------------


def handoff_scope(session, conversation=None):
    return f"conversation:{conversation.pk}" if conversation is not None else f"session:{session.pk}"


def active_handoff(session, conversation=None, now=None):
    """The handoff silencing this conversation (its own, or its whole number's), or None."""
    now = now or timezone.now()
    scopes = [handoff_scope(session)] + ([handoff_scope(session, conversation)] if conversation is not None else [])
    return Handoff.objects.filter(scope__in=scopes, until__gt=now).order_by("-until").first()


def set_handoff(tenant, session, *, conversation=None, on, minutes=None, acting_user=None, reason="",
                requested=False, now=None):
    """Switch the handoff of a conversation (or of the whole number) on for `minutes` (default: the
    receptionist's handoff_minutes) or off. Returns the Handoff row (None once off). Audited when a person or key
    switched it; automation's own switches (the contact asked, staff replied from the phone) are in its log."""
    now = now or timezone.now()
    if minutes is not None:
        _whole("minutes", minutes, MAX_HANDOFF_MINUTES)
    scope = handoff_scope(session, conversation)
    with transaction.atomic():
        current = Handoff.objects.select_for_update().filter(scope=scope).first()
        before = {"until": current.until.isoformat()} if current is not None and current.until > now else {}
        row = None
        if on:
            if minutes is None:
                minutes = _effective_handoff_minutes(session)
            row, _ = Handoff.objects.update_or_create(scope=scope, defaults={
                "session": session, "conversation": conversation, "until": now + timedelta(minutes=minutes),
                "requested": requested, "reason": reason[:40],
                "started_by": acting_user if getattr(acting_user, "pk", None) else None, "started_at": now})
        if acting_user is not None:
            audit.record("whatsapp.handoff_on" if on else "whatsapp.handoff_off", actor=acting_user,
                         target=conversation or session, before=before,
                         after={"until": row.until.isoformat()} if row else {}, tenant=tenant)
        if not on and current is not None:
            current.delete()
    return row


def _effective_handoff_minutes(session):
    own = Receptionist.objects.filter(scope=scope_of(session)).first()
    row = own or Receptionist.objects.filter(scope="workspace").first()
    return row.handoff_minutes if row is not None else 60


def erase_log(erasure):
    """A contact's erasure (whatsapp.conversations.erasure): the receptionist's log of its chats names it."""
    deleted, _ = AutomationLog.objects.filter(
        Q(contact_id=erasure.contact.pk) | Q(conversation_id__in=erasure.conversation_ids)
        | Q(session_id=erasure.session_id, chat_jid__in=erasure.jids)).delete()
    erasure.count("automation_log", deleted)
