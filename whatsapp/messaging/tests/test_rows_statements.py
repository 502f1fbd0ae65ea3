"""The messaging statements written out with core.rows give exactly what the ORM reads for the same rows (every
concrete field, whatever a model gains): the accept path's lookup of a message's session, conversation, contact
and block (also compiled by the ORM with SPEED_PATH_SQL=false, kept to measure the difference: the same
answers, misses and blocked numbers included), the drain's session and claim (UPDATE … RETURNING) and the
receipts' update (UPDATE … RETURNING)."""
import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from core.tests.instances import assert_same_instance, assert_same_instances
from whatsapp.messaging import actions as messaging
from whatsapp.messaging import drain as sending
from whatsapp.messaging import pacing, recipients
from whatsapp.models import BlockedNumber, Contact, Conversation, Group, Message, WhatsAppSession
from whatsapp.tests.support import Accepting

pytestmark = pytest.mark.django_db

PATHS = [pytest.param(True, id="rows"), pytest.param(False, id="orm")]
KNOWN, NO_CONTACT, BLOCKED, NEW = "+6281234567890", "+6281234567891", "+6281234567892", "+6281234567893"
GROUP_JID = "120363025246125486@g.us"


def jid(phone):
    return f"{phone[1:]}@s.whatsapp.net"


@pytest.fixture
def chats(named):
    """In Acme: two sessions; front-desk has a conversation with a contact, one without, a group's and one with
    a number the tenant blocked. The same number's conversation in Globex, whose schema must not be read."""
    with tenant_context(named.acme):
        desk = WhatsAppSession.objects.create(name="front-desk", phone="+14155550123", status="connected")
        WhatsAppSession.objects.create(name="back-office", phone="+14155550124", status="disconnected")
        contact = Contact.objects.create(session=desk, jid=jid(KNOWN), phone=KNOWN, name="Budi", source="outbound")
        group = Group.objects.create(session=desk, jid=GROUP_JID, name="Team",
                                     participants=[{"jid": jid(KNOWN), "phone": KNOWN, "is_admin": True}])
        Conversation.objects.create(session=desk, chat_jid=jid(KNOWN), contact=contact, unread_count=2,
                                    last_message_at=timezone.now(), last_message_preview="hi")
        Conversation.objects.create(session=desk, chat_jid=jid(NO_CONTACT))
        Conversation.objects.create(session=desk, chat_jid=GROUP_JID, group=group)
        blocked_contact = Contact.objects.create(session=desk, jid=jid(BLOCKED), phone=BLOCKED)
        Conversation.objects.create(session=desk, chat_jid=jid(BLOCKED), contact=blocked_contact)
        BlockedNumber.objects.create(phone=BLOCKED, reason="asked us to stop")
    with tenant_context(named.globex):
        desk = WhatsAppSession.objects.create(name="front-desk", phone="+14155550999", status="connected")
        Conversation.objects.create(session=desk, chat_jid=jid(NEW))
        BlockedNumber.objects.create(phone=NEW)
    return named


def read_by_the_orm(name, phone, chat_jid):
    """What _lookup returns, each part read by the ORM from its own table."""
    session = WhatsAppSession.objects.filter(name=name).first()
    if session is None:
        return None, None, None, False
    conversation = Conversation.objects.filter(session=session, chat_jid=chat_jid).first()
    contact = Contact.objects.filter(pk=conversation.contact_id).first() if conversation else None
    return session, conversation, contact, BlockedNumber.objects.filter(phone=phone).exists()


LOOKUPS = {  # (session, phone, chat JID) → (session found, conversation found, contact found, blocked)
    "a known number": (("front-desk", KNOWN, jid(KNOWN)), (True, True, True, False)),
    "a conversation without a contact": (("front-desk", NO_CONTACT, jid(NO_CONTACT)), (True, True, False, False)),
    "a group": (("front-desk", "", GROUP_JID), (True, True, False, False)),
    "a blocked number": (("front-desk", BLOCKED, jid(BLOCKED)), (True, True, True, True)),
    "a new number (another tenant's)": (("front-desk", NEW, jid(NEW)), (True, False, False, False)),
    "another session's number": (("back-office", KNOWN, jid(KNOWN)), (True, False, False, False)),
    "an unknown session": (("nowhere", KNOWN, jid(KNOWN)), (False, False, False, False)),
    "an unknown session, blocked number": (("nowhere", BLOCKED, jid(BLOCKED)), (False, False, False, False)),
}


@pytest.mark.parametrize("speed_path", PATHS)
@pytest.mark.parametrize("case", LOOKUPS)
def test_the_accept_lookup_is_what_the_orm_reads(chats, case, speed_path, settings, django_assert_num_queries):
    settings.SPEED_PATH_SQL = speed_path
    key, shape = LOOKUPS[case]
    with tenant_context(chats.acme):
        expected = read_by_the_orm(*key)
        with django_assert_num_queries(1):
            found = messaging._lookup(*key)
    session, conversation, contact, blocked = found
    assert (session is not None, conversation is not None, contact is not None, blocked) == shape
    assert blocked is expected[3]
    for ours, orm in zip(found[:3], expected[:3]):
        assert_same_instance(ours, orm)


@pytest.mark.parametrize("speed_path", PATHS)
def test_the_tenant_block_check_is_the_orms(chats, speed_path, settings):
    settings.SPEED_PATH_SQL = speed_path
    with tenant_context(chats.acme):
        assert [recipients.blocked_by_tenant(p) for p in (KNOWN, BLOCKED, NEW)] == [False, True, False]
    with tenant_context(chats.globex):
        assert [recipients.blocked_by_tenant(p) for p in (KNOWN, BLOCKED, NEW)] == [False, False, True]


def test_the_api_accepts_and_refuses_the_same_through_either_path(chats, clients, settings,
                                                                  django_capture_on_commit_callbacks):
    settings.WHATSAPP_RATE_LIMIT_PER_COMPANY = -1
    sends = [("front-desk", KNOWN), ("front-desk", NO_CONTACT), ("front-desk", GROUP_JID), ("front-desk", BLOCKED),
             ("front-desk", NEW), ("back-office", KNOWN), ("nowhere", KNOWN)]
    answers = {}
    with django_capture_on_commit_callbacks(execute=False):
        clients["alice"].post("/api/v1/messages", {"session": "front-desk", "to": NEW, "text": "first"},
                              format="json")  # its conversation now exists for both paths
        for speed_path in (True, False):
            settings.SPEED_PATH_SQL = speed_path
            answers[speed_path] = []
            for session, to in sends:
                response = clients["alice"].post("/api/v1/messages", {"session": session, "to": to, "text": "x"},
                                                 format="json")
                body = response.json()
                answers[speed_path].append(
                    (response.status_code, body["error"]["code"]) if not body["success"] else
                    (response.status_code, body["data"]["conversation_id"], body["data"]["contact_id"]))
    assert answers[True] == answers[False]
    assert [answer[0] for answer in answers[True]] == [202, 202, 202, 400, 202, 409, 404]
    assert [answer[1] for answer in answers[True] if answer[0] >= 400] == [
        "blocked_recipient", "session_not_connected", "not_found"]
    assert all(answer[1] for answer in answers[True] if answer[0] == 202)  # each found its conversation


def test_a_claim_returns_the_rows_it_moved_as_the_orm_reads_them(chats):
    with tenant_context(chats.acme):
        session = WhatsAppSession.objects.get(name="front-desk")
        for i in range(3):
            Message.objects.create(session=session, direction="out", to_phone=KNOWN, chat_jid=jid(KNOWN),
                                   text=f"m{i}", type="contact" if i == 1 else "text",
                                   contact_card={"name": "Budi", "phone": KNOWN, "vcard": None} if i == 1 else None,
                                   latitude=-6.2 if i == 2 else None, idempotency_key=f"key-{i}")
        claimed = sending.claim(session, pacing.current_policy(), timezone.now(), 10)
        assert [m.status for m in claimed] == ["sending"] * 3
        assert_same_instances(claimed, list(Message.objects.order_by("pk")))
        assert claimed[1].contact_card == {"name": "Budi", "phone": KNOWN, "vcard": None}


def test_the_drain_finds_its_session_as_the_orm_reads_it(chats, monkeypatch):
    with tenant_context(chats.acme):
        session_id = WhatsAppSession.objects.get(name="front-desk").pk
        Message.objects.create(session_id=session_id, direction="out", to_phone=KNOWN, chat_jid=jid(KNOWN), text="a")
    drained_sessions = []
    original = sending.claim
    monkeypatch.setattr(sending, "claim", lambda session, *args, **kwargs: drained_sessions.append(session)
                        or original(session, *args, **kwargs))
    assert sending.drain(chats.acme.schema_name, session_id, Accepting()) == 1
    with tenant_context(chats.acme):
        expected = WhatsAppSession.objects.get(pk=session_id)
    assert drained_sessions
    for session in drained_sessions:
        assert_same_instance(session, expected)


def test_a_receipt_returns_the_rows_it_moved_as_the_orm_reads_them(chats):
    with tenant_context(chats.acme):
        session = WhatsAppSession.objects.get(name="front-desk")
        for i, status in enumerate(["sent", "sent", "read", "sending"]):
            Message.objects.create(session=session, direction="out", to_phone=KNOWN, chat_jid=jid(KNOWN),
                                   text=f"m{i}", status=status, provider_message_id=f"SIM{i}",
                                   sent_at=timezone.now() if status != "sending" else None)
        result = messaging.apply_receipt(session, {"ids": ["SIM0", "SIM1", "SIM2", "SIM3"], "status": "delivered"})
        assert [m.provider_message_id for m in result.moved] == ["SIM0", "SIM1"]
        assert_same_instances(result.moved, list(Message.objects.filter(provider_message_id__in=["SIM0", "SIM1"])
                                                 .order_by("pk")))
        assert all(m.status == "delivered" and m.delivered_at for m in result.moved)
