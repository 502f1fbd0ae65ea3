"""Contacts, groups and conversations: who a session talks to (tenant schema).

Called by whatsapp.messaging.actions inside its transactions (for_outgoing, for_inbound), by the directory API and the
conversation pages (delete_contact, request_sync, mark_read) and by the session host (whatsapp.messaging.drain:
note_outgoing; sync_on_host → apply_sync). Every change to these rows goes through here.

@lid senders: WhatsApp may hide a sender's number behind a "linked identity" (…@lid). When the event carries
the number too (sender_phone, from neonize's SenderAlt), the contact is keyed by the phone JID and remembers the
lid; when it does not but an earlier event or a sync taught us that lid's number, the sender is resolved from
that contact; otherwise the contact stays keyed by the @lid with no phone, and the pages say the number is hidden.
"""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_tenants.utils import schema_context

from audit import actions as audit
from core import crypto, rows
from core.errors import DomainError
from whatsapp.host import commands
from whatsapp.live import conversations_group
from whatsapp.providers.base import ProviderError
from whatsapp.sessions import events as session_events
from whatsapp.sessions.models import SessionActivity, WhatsAppSession

from .errors import ConversationError
from .models import Contact, Conversation, Group

log = logging.getLogger(__name__)

PREVIEW_LENGTH = 200
PHONE_SERVER = "s.whatsapp.net"
# Message types (the API's values) shown in a conversation's preview when the message has no text.
TYPE_PREVIEWS = {
    "image": "📷 Photo",
    "document": "📄 Document",
    "audio": "🎤 Audio",
    "video": "🎥 Video",
    "location": "📍 Location",
    "contact": "👤 Contact",
    "reaction": "Reaction",
    "sticker": "Sticker",
    "other": "Message",
}


# --- JIDs -----------------------------------------------------------------------------------------------------


def is_group_jid(jid):
    return str(jid or "").endswith("@g.us")


def is_lid_jid(jid):
    return str(jid or "").endswith("@lid")


def _digits(phone):
    return "".join(ch for ch in str(phone or "") if ch.isdigit())


def phone_jid(phone):
    digits = _digits(phone)
    return f"{digits}@{PHONE_SERVER}" if digits else ""


def phone_of_jid(jid):
    """"+14155550123" for "14155550123@s.whatsapp.net" (a device suffix ":12" is dropped), else ""."""
    user, _, server = str(jid or "").partition("@")
    user = user.split(":", 1)[0]
    return f"+{user}" if server == PHONE_SERVER and user.isdigit() else ""


def _e164(phone):
    digits = _digits(phone)
    return f"+{digits}"[:20] if digits else ""


def preview_of(message):
    text = message.text or message.caption
    if message.type == "reaction" and message.reaction:
        text = f"Reacted {message.reaction}"
    elif message.type == "location":
        text = f"📍 {message.location_name or 'Location'}"
    elif message.type == "contact":
        name = (message.contact_card or {}).get("name") if isinstance(message.contact_card, dict) else None
        text = f"👤 {name or text or 'Contact'}"
    elif message.type != "text":
        label = TYPE_PREVIEWS.get(message.type, "Message")
        text = f"{label}: {text}" if text else label
    return (text or "").replace("\n", " ")[:PREVIEW_LENGTH]


# --- upserts --------------------------------------------------------------------------------------------------


def _upsert_contact(session, jid, *, phone="", lid="", push_name="", name="", source=Contact.Source.INBOUND):
    """The contact (session, jid), created with `source` when new; fills what is given, never blanks a field."""
    now = timezone.now()
    contact, created = Contact.objects.get_or_create(
        session=session, jid=jid[:100],
        defaults={"phone": phone[:20], "lid": lid[:100], "push_name": push_name[:255], "name": name[:255],
                  "source": source, "created_at": now, "updated_at": now})
    if created:
        return contact
    changed = []
    for field, value, limit in (("phone", phone, 20), ("lid", lid, 100), ("push_name", push_name, 255),
                                ("name", name, 255)):
        if value and getattr(contact, field) != value[:limit]:
            setattr(contact, field, value[:limit])
            changed.append(field)
    if changed:
        contact.updated_at = now
        contact.save(update_fields=[*changed, "updated_at"])
    return contact


def _absorb_lid_contact(session, lid, contact):
    """An earlier contact keyed by the bare @lid is the same person as `contact` (now known by number): its
    messages and conversations move over and it goes, so there is one contact per person."""
    if not lid or lid == contact.jid:
        return
    for stale in Contact.objects.filter(session=session, jid=lid).exclude(pk=contact.pk):
        if contact.phone:  # what they sent while hidden now shows who sent it
            stale.messages.filter(sender_unresolved=True).update(from_phone=contact.phone, sender_unresolved=False)
        stale.messages.update(contact=contact)
        Conversation.objects.filter(contact=stale).update(contact=contact)
        if not contact.push_name and stale.push_name:
            contact.push_name = stale.push_name
            contact.save(update_fields=["push_name"])
        stale.delete()


def _resolved_contact(session, jid, phone, lid, push_name, source):
    """Contact for a sender/recipient: keyed by the phone JID when the number is known (remembering `lid`),
    else by its own JID. Returns the contact."""
    if phone:
        contact = _upsert_contact(session, phone_jid(phone), phone=_e164(phone), lid=lid, push_name=push_name,
                                  source=source)
        _absorb_lid_contact(session, lid, contact)
        return contact
    return _upsert_contact(session, jid, lid=lid, push_name=push_name, source=source)


def _upsert_group(session, jid, **fields):
    group, created = Group.objects.get_or_create(session=session, jid=jid[:100], defaults=fields)
    if not created and fields:
        for key, value in fields.items():
            setattr(group, key, value)
        group.save(update_fields=list(fields))
    return group


# Called on commit with (schema_name, session_id, conversation_id) when a contact's first message makes a conversation: the
# inbox's auto-assignment registers here (WhatsappConfig.ready); conversations imports no feature above it.
new_inbound_conversation_hooks = []


def _upsert_conversation(session, chat_jid, *, contact=None, group=None, inbound=False):
    conversation, created = Conversation.objects.get_or_create(
        session=session, chat_jid=chat_jid[:100], defaults={"contact": contact, "group": group})
    if created and inbound:
        schema_name, session_id, conversation_id = connection.schema_name, session.pk, conversation.pk
        for hook in new_inbound_conversation_hooks:
            transaction.on_commit(lambda hook=hook: hook(schema_name, session_id, conversation_id))
    if not created and ((contact is not None and conversation.contact_id != contact.pk)
                        or (group is not None and conversation.group_id != group.pk)):
        conversation.contact = contact or conversation.contact
        conversation.group = group or conversation.group
        conversation.save(update_fields=["contact", "group"])
    return conversation


def _note(conversation, message, *, unread):
    """Move the conversation's last message to `message` unless a newer one is there already."""
    changes = {"last_message_at": message.created_at, "last_message_preview": preview_of(message)}
    newer_or_first = Q(last_message_at__isnull=True) | Q(last_message_at__lte=message.created_at)
    Conversation.objects.filter(pk=conversation.pk).filter(newer_or_first).update(**changes)
    if unread:  # the contact wrote: the inbox has it open again (in the same statement)
        Conversation.objects.filter(pk=conversation.pk).update(unread_count=F("unread_count") + 1,
                                                               status=Conversation.Status.OPEN)
    conversation.refresh_from_db(fields=["last_message_at", "last_message_preview", "unread_count", "status"])


# --- messaging's seams ------------------------------------------------------------------------------------------


def is_current(conversation, phone, chat_jid):
    """Whether `conversation` (with its contact loaded), found for a message to `chat_jid`, is what for_outgoing
    would return unchanged: a group's conversation with its group, or a number's with the contact recorded under
    that number (so its upserts would change nothing)."""
    if is_group_jid(chat_jid):
        return conversation.group_id is not None
    phone = phone or phone_of_jid(chat_jid)
    contact = conversation.contact if conversation.contact_id else None
    return bool(phone) and contact is not None and contact.jid == phone_jid(phone) == conversation.chat_jid \
        and contact.phone == _e164(phone)


def for_outgoing(session, phone, chat_jid):
    """(conversation, contact) for a message being queued to `chat_jid` (contact None for a group), made or
    completed here. The common case, a chat written to before, is found by whatsapp.messaging.actions's lookup of the
    session (one statement for both) and checked with is_current."""
    if is_group_jid(chat_jid):
        group = _upsert_group(session, chat_jid)
        return _upsert_conversation(session, chat_jid, group=group), None
    phone = phone or phone_of_jid(chat_jid)
    contact = _resolved_contact(session, chat_jid, phone, "", "", Contact.Source.OUTBOUND)
    conversation = _upsert_conversation(session, contact.jid, contact=contact)
    conversation.contact = contact  # the same row: the live update's summary reads it without a query
    return conversation, contact


def note_outgoing(messages):
    """Outgoing messages the session host just handled (sent, failed, or waiting for their pacing slot) become
    their conversations' last message, unless a newer one is there: one statement however many messages and
    conversations (called in the drain's transaction, whatsapp.messaging.drain)."""
    latest = {}
    for message in messages:
        held = latest.get(message.conversation_id)
        if message.conversation_id and (held is None or (message.created_at, message.pk) > (held.created_at, held.pk)):
            latest[message.conversation_id] = message
    if not latest:
        return {}
    rows = [(conversation_id, message.created_at, crypto.seal(preview_of(message)))  # written out: sealed here
            for conversation_id, message in latest.items()]
    values = ", ".join(["(%s::bigint, %s::timestamptz, %s::text)"] * len(rows))
    table = connection.ops.quote_name(Conversation._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS c SET last_message_at = v.at, last_message_preview = v.preview "
            f"FROM (VALUES {values}) AS v(id, at, preview) "
            f"WHERE c.id = v.id AND (c.last_message_at IS NULL OR c.last_message_at <= v.at)",
            [value for row in rows for value in row])


def of_messages(messages):
    """{id: Conversation (contact and group loaded)} of the messages' conversations, in one statement (on every
    batch the host sends: written out, core.rows): what the live list page shows of them."""
    ids = sorted({message.conversation_id for message in messages if message.conversation_id})
    if not ids:
        return {}
    found = {}
    for conversation, contact, group in rows.select(
            Conversation, "c", f"LEFT JOIN {rows.table(Contact)} ct ON ct.id = c.contact_id "
            f"LEFT JOIN {rows.table(Group)} g ON g.id = c.group_id WHERE c.id = ANY(%s)", [ids],
            joined=[(Contact, "ct"), (Group, "g")]):
        conversation.contact, conversation.group = contact, group
        found[conversation.pk] = conversation
    return found


def for_inbound(session, message, data):
    """(conversation, contact) for a received message (`data` is the provider's MESSAGE event). Resolves an
    @lid sender where it can and records on `message` whether it could."""
    sender = message.sender_jid or message.chat_jid
    lid = next((jid for jid in (sender, data.get("sender_alt"), data.get("sender_lid")) if is_lid_jid(jid)), "")
    phone = _e164(data.get("sender_phone") or phone_of_jid(sender) or phone_of_jid(data.get("sender_alt")))
    push_name = str(data.get("push_name") or "")
    if not phone and lid:
        known = (Contact.objects.filter(session=session, lid=lid).exclude(phone="").order_by("-updated_at")
                 .first())
        if known is not None:
            phone = known.phone
    contact = _resolved_contact(session, sender, phone, lid, push_name, Contact.Source.INBOUND)
    if contact.phone and (message.sender_unresolved or message.from_phone != contact.phone):
        message.from_phone, message.sender_unresolved = contact.phone, False
        message.save(update_fields=["from_phone", "sender_unresolved"])
    if is_group_jid(message.chat_jid):
        group = _upsert_group(session, message.chat_jid)
        conversation = _upsert_conversation(session, message.chat_jid, group=group, inbound=True)
    else:
        conversation = _upsert_conversation(session, contact.jid, contact=contact, inbound=True)
    _note(conversation, message, unread=True)
    return conversation, contact


# --- the pages and the API --------------------------------------------------------------------------------------


def mark_read(conversation):
    """The tenant opened the conversation: nothing in it is unread any more."""
    if conversation.unread_count:
        Conversation.objects.filter(pk=conversation.pk).update(unread_count=0)
        conversation.unread_count = 0
    return conversation


def delete_contact(contact, *, acting_user=None, tenant=None):
    """Forget a contact. Its messages and conversations stay (they are records of what happened); a new
    message from or to the number creates the contact again."""
    with transaction.atomic():
        audit.record("whatsapp.contact_deleted", actor=acting_user, target=contact, tenant=tenant,
                     before={"jid": contact.jid, "phone": contact.phone, "name": str(contact)})
        contact.delete()


def request_sync(session):
    """Ask the host running `session` to read the phone's contacts and groups (apply_sync records them).
    409 session_not_connected unless connected; 409 session_not_running when no host runs it."""
    if session.status != WhatsAppSession.Status.CONNECTED:
        raise DomainError(ConversationError.SESSION_NOT_CONNECTED,
                          f"The session '{session.name}' is not connected; contacts sync from a linked, connected phone.",
                          {"status": session.status})
    commands.send(connection.schema_name, session.pk, "sync_contacts")


def apply_sync(schema_name, session_id, contacts, groups):
    """Record the phone's address book and groups for one session, in one transaction. `contacts`:
    [{jid, phone, name, push_name, lid}], `groups`: [{jid, name, topic, participants}]. Returns counts."""
    from django_tenants.utils import schema_context

    now = timezone.now()
    counts = {"contacts": 0, "contacts_created": 0, "groups": 0, "groups_created": 0}
    with schema_context(schema_name), transaction.atomic():
        session = WhatsAppSession.objects.filter(pk=session_id).first()
        if session is None:
            return None
        for entry in contacts:
            jid = str(entry.get("jid") or "")
            lid = str(entry.get("lid") or "") or (jid if is_lid_jid(jid) else "")
            phone = _e164(entry.get("phone") or phone_of_jid(jid))
            if not jid and not phone:
                continue
            key = phone_jid(phone) if phone else jid
            existed = Contact.objects.filter(session=session, jid=key).exists()
            contact = _upsert_contact(session, key, phone=phone, lid=lid, name=str(entry.get("name") or ""),
                                      push_name=str(entry.get("push_name") or ""), source=Contact.Source.SYNC)
            _absorb_lid_contact(session, lid, contact)
            Conversation.objects.filter(session=session, chat_jid=contact.jid, contact__isnull=True).update(
                contact=contact)
            counts["contacts"] += 1
            counts["contacts_created"] += not existed
        for entry in groups:
            jid = str(entry.get("jid") or "")
            if not is_group_jid(jid):
                continue
            participants = [{"jid": str(p.get("jid") or ""), "phone": _e164(p.get("phone")) or None,
                             "is_admin": bool(p.get("is_admin"))} for p in entry.get("participants") or []]
            existed = Group.objects.filter(session=session, jid=jid).exists()
            group = _upsert_group(session, jid, name=str(entry.get("name") or "")[:255],
                                  topic=str(entry.get("topic") or ""), participants=participants, synced_at=now)
            Conversation.objects.filter(session=session, chat_jid=jid, group__isnull=True).update(group=group)
            counts["groups"] += 1
            counts["groups_created"] += not existed
    return counts


def sync_on_host(schema_name, session_id, provider):
    """On the session host: read the phone's address book through `provider`, record it, tell open pages.
    A provider error becomes an activity row (and a live notice), never an exception."""
    try:
        if provider is None:
            raise ProviderError("session_not_running", "This session is not running on this host.")
        contacts, groups = provider.fetch_contacts(), provider.fetch_groups()
    except ProviderError as exc:
        _sync_failed(schema_name, session_id, f"{exc.code}: {exc}")
        return None
    counts = apply_sync(schema_name, session_id, contacts, groups)
    if counts is not None:
        _announce(schema_name, {"type": "contacts.synced", "data": {"session_id": session_id, "ok": True,
                                                                     **counts}})
    return counts


def _sync_failed(schema_name, session_id, reason):
    with schema_context(schema_name):
        session = WhatsAppSession.objects.filter(pk=session_id).first()
        if session is None:
            return
        SessionActivity.objects.create(session=session, kind=SessionActivity.Kind.ERROR,
                                       message=f"Contact sync failed ({reason})"[:500])
    session_events.announce(schema_name, session_id)
    _announce(schema_name, {"type": "contacts.synced", "data": {"session_id": session_id, "ok": False,
                                                                 "error": reason[:500]}})


def _announce(schema_name, message):
    try:
        async_to_sync(get_channel_layer().group_send)(conversations_group(schema_name), message)
    except Exception:  # the page shows the synced rows on its next load anyway
        log.warning("contact sync announcement for %s failed", schema_name, exc_info=True)
