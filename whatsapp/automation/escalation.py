"""Telling people that a contact asks for one: when a handoff is requested (the contact's handoff word, a rule that
routes to a person, or the bot), the receptionist's escalation contacts hear of it by email (the members chosen,
and other addresses) and Telegram (the platform's bot, TELEGRAM_BOT_TOKEN at TELEGRAM_API_BASE, to the chat ids
chosen), besides the conversation.handoff_requested webhook event. Runs in a worker (the escalate task, queued on
commit by whatsapp.automation.engine.carry_out); what was told, or what failed, is added to the log row's detail."""
import logging

from django.conf import settings
from django.core.mail import send_mail

from accounts.models import Membership
from core import telegram

from . import engine
from .models import AutomationLog

log = logging.getLogger(__name__)


def recipients(profile):
    """(emails, Telegram chat ids) the receptionist `profile` tells."""
    member_emails = Membership.objects.filter(pk__in=profile.escalation_member_ids or [], user__is_active=True) \
        .values_list("user__email", flat=True)
    emails = sorted({email.lower() for email in member_emails} | set(profile.escalation_emails or []))
    return emails, list(profile.escalation_telegram_chat_ids or [])


def text_of(row):
    message = row.inbound
    who = (row.conversation.contact if row.conversation_id and row.conversation.contact_id else None)
    name = (str(who) if who is not None else "") or (message.from_phone if message else "") or row.chat_jid
    said = ((message.text or message.caption) if message is not None else "")[:300]
    link = f"{settings.SITE_URL}/conversations/{row.conversation_id}/" if row.conversation_id else ""
    return (f"[{settings.SITE_NAME}] {name} asks for a person on {row.session}"
            + (f": “{said}”" if said else "") + (f"\n{link}" if link else ""))


def escalate(log_id):
    """Tell the escalation contacts of the log row's session about its handoff request. In the tenant's schema.
    Returns {"email": n sent, "telegram": n sent, "failed": [why, …]}."""
    row = (AutomationLog.objects.select_related("session", "conversation__contact", "inbound")
           .filter(pk=log_id).first())
    profile = engine.receptionist_for(row.session) if row is not None else None
    if profile is None:
        return None
    emails, chats = recipients(profile)
    text = text_of(row)
    told = {"email": 0, "telegram": 0, "failed": []}
    if emails:
        try:
            send_mail(text.splitlines()[0][:150], text, None, emails)
            told["email"] = len(emails)
        except Exception as exc:  # one channel down must not silence the other
            log.warning("escalation %s: email failed", log_id, exc_info=True)
            told["failed"].append(f"email: {type(exc).__name__}")
    if chats and not telegram.configured():
        told["failed"].append("telegram: the platform has no Telegram bot (TELEGRAM_BOT_TOKEN)")
    elif chats:
        for chat in chats:
            try:
                telegram.send_message(chat, text)
                told["telegram"] += 1
            except Exception as exc:
                log.warning("escalation %s: Telegram chat %s failed", log_id, chat, exc_info=True)
                told["failed"].append(f"telegram {chat}: {type(exc).__name__}")
    if emails or chats:
        summary = f"told: {told['email']} by email, {told['telegram']} on Telegram"
        if told["failed"]:
            summary += f"; failed: {', '.join(told['failed'])}"
        detail = f"{row.detail}; {summary}" if row.detail else summary
        AutomationLog.objects.filter(pk=row.pk).update(detail=detail[:500])
    return told
