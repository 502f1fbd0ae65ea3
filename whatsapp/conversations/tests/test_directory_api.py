"""The directory API: GET /contacts, POST /contacts/sync, DELETE /contacts/{id}, GET /groups, /groups/{id},
/conversations, /conversations/{id}/messages — contracts, roles, billing and the cross-tenant matrix.

alice owns Acme, bob is a member of Acme, carol owns Globex. Rows are made through whatsapp.messaging.actions and
whatsapp.conversations.actions, as production makes them.
"""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.models import Subscription
from whatsapp.conversations import actions as conversations
from whatsapp.messaging import actions as messaging
from whatsapp.messaging.payloads import message_payload
from whatsapp.models import Contact, Conversation, Group, Message, WhatsAppSession
from whatsapp.tests.support import error, ok

V1 = "/api/v1"
PEER, PEER_JID = "+6281234567890", "6281234567890@s.whatsapp.net"
OTHER, OTHER_JID = "+14155550199", "14155550199@s.whatsapp.net"
GROUP = "120363025246125486@g.us"


def make_session(tenant, name="front-desk", status=WhatsAppSession.Status.CONNECTED):
    with tenant_context(tenant):
        return WhatsAppSession.objects.create(name=name, phone="+14155550123", status=status)


def receive(tenant, session, *, sender=PEER_JID, phone=PEER, chat=None, text="hi", push_name="", at=None):
    with tenant_context(tenant):
        n = Message.objects.count() + 1
        return messaging.store_inbound(session, {"id": f"IN{n}", "chat": chat or sender, "sender": sender,
                                                 "sender_phone": phone, "type": "text", "text": text,
                                                 "push_name": push_name},
                                       now=at)


@pytest.fixture
def acme_directory(named):
    """Acme: a session with Budi (2 messages, unread), Ann (synced, named), a group with one message."""
    session = make_session(named.acme)
    base = timezone.now() - timedelta(minutes=10)
    receive(named.acme, session, text="first", push_name="Budi", at=base)
    receive(named.acme, session, text="second", push_name="Budi", at=base + timedelta(minutes=1))
    receive(named.acme, session, chat=GROUP, text="group hello", at=base + timedelta(minutes=2))
    conversations.apply_sync(named.acme.schema_name, session.pk, [
        {"jid": OTHER_JID, "phone": OTHER, "name": "Ann Example", "push_name": "Ann"}],
        [{"jid": GROUP, "name": "Team", "topic": "Daily", "participants": [
            {"jid": PEER_JID, "phone": PEER, "is_admin": True}, {"jid": OTHER_JID, "phone": OTHER}]}])
    with tenant_context(named.acme):
        return {"session": session, "budi": Contact.objects.get(jid=PEER_JID),
                "ann": Contact.objects.get(jid=OTHER_JID), "group": Group.objects.get(),
                "budi_chat": Conversation.objects.get(chat_jid=PEER_JID),
                "group_chat": Conversation.objects.get(chat_jid=GROUP)}


@pytest.fixture
def globex_directory(named):
    session = make_session(named.globex, "globex-line")
    receive(named.globex, session, sender=OTHER_JID, phone=OTHER, text="globex secret")
    conversations.apply_sync(named.globex.schema_name, session.pk, [],
                             [{"jid": GROUP, "name": "Globex team", "participants": []}])
    with tenant_context(named.globex):
        return {"session": session, "contact": Contact.objects.get(), "group": Group.objects.get(),
                "conversation": Conversation.objects.get()}


# --- contacts -------------------------------------------------------------------------------------------------


def test_contacts_list_search_and_pagination(named, clients, acme_directory):
    alice = clients["alice"]
    body = alice.get(f"{V1}/contacts").json()
    assert body["success"] is True and body["pagination"] == {"page": 1, "limit": 20, "total": 2, "pages": 1}
    by_jid = {c["jid"]: c for c in body["data"]}
    assert by_jid[OTHER_JID] == {
        "id": acme_directory["ann"].pk, "session": "front-desk", "jid": OTHER_JID, "phone": OTHER, "lid": None,
        "name": "Ann Example", "push_name": "Ann", "display_name": "Ann Example", "phone_hidden": False,
        "source": "sync", "created_at": by_jid[OTHER_JID]["created_at"],
        "updated_at": by_jid[OTHER_JID]["updated_at"]}
    assert by_jid[PEER_JID]["push_name"] == "Budi" and by_jid[PEER_JID]["source"] == "inbound"

    assert [c["jid"] for c in ok(alice.get(f"{V1}/contacts?search=ann"))] == [OTHER_JID]
    assert [c["jid"] for c in ok(alice.get(f"{V1}/contacts?search=budi"))] == [PEER_JID]
    assert [c["jid"] for c in ok(alice.get(f"{V1}/contacts", {"search": "+62 812"}))] == [PEER_JID]
    assert ok(alice.get(f"{V1}/contacts?search=nobody")) == []
    assert len(ok(alice.get(f"{V1}/contacts?session=front-desk"))) == 2
    page = alice.get(f"{V1}/contacts?page=2&limit=1").json()
    assert len(page["data"]) == 1 and page["pagination"]["pages"] == 2
    error(alice.get(f"{V1}/contacts?session=nope"), 404, "not_found")
    error(alice.get(f"{V1}/contacts", {"search": "x" * 101}), 400, "invalid_search")
    past = alice.get(f"{V1}/contacts?page=9").json()  # a page past the last is empty, not an error
    assert past["data"] == [] and past["pagination"]["page"] == 9 and past["pagination"]["total"] == 2
    error(alice.get(f"{V1}/contacts?page=0"), 400, "validation_error")
    error(alice.get(f"{V1}/contacts?limit="), 400, "validation_error")


def test_an_unresolved_lid_contact_says_its_number_is_hidden(named, clients):
    session = make_session(named.acme)
    receive(named.acme, session, sender="1234567@lid", phone=None, text="who am I")
    contact = ok(clients["bob"].get(f"{V1}/contacts"))[0]
    assert (contact["jid"], contact["phone"], contact["lid"], contact["phone_hidden"]) == (
        "1234567@lid", None, "1234567@lid", True)


def test_delete_contact_is_for_agents_and_up_not_viewers(named, clients, acme_directory, api_as):
    from accounts.models import Membership
    from conftest import make_user

    ann = acme_directory["ann"].pk
    viewer = make_user("vera@acme.test")
    Membership.objects.create(user=viewer, tenant=named.acme, role=Membership.Role.VIEWER)
    error(api_as(viewer).delete(f"{V1}/contacts/{ann}"), 403, "permission_denied")
    response = clients["bob"].delete(f"{V1}/contacts/{ann}")
    assert response.status_code == 204 and response.content == b""
    with tenant_context(named.acme):
        assert not Contact.objects.filter(pk=ann).exists()
    error(clients["alice"].delete(f"{V1}/contacts/{ann}"), 404, "not_found")


def test_sync_contacts_contract(named, clients, acme_directory):
    alice = clients["alice"]
    error(alice.post(f"{V1}/contacts/sync", {}, format="json"), 400, "validation_error")
    error(alice.post(f"{V1}/contacts/sync", {"session": "nope"}, format="json"), 404, "not_found")
    make_session(named.acme, "asleep", status=WhatsAppSession.Status.DISCONNECTED)
    err = error(alice.post(f"{V1}/contacts/sync", {"session": "asleep"}, format="json"), 409,
                "session_not_connected")
    assert err["details"] == {"status": "disconnected"}
    # Connected in the database but no host holds it: nobody could read the phone.
    error(alice.post(f"{V1}/contacts/sync", {"session": "front-desk"}, format="json"), 409, "session_not_running")


def test_sync_needs_a_paying_tenant(named, clients, acme_directory):
    Subscription.objects.filter(tenant=named.acme).update(status=Subscription.Status.READ_ONLY)
    error(clients["alice"].post(f"{V1}/contacts/sync", {"session": "front-desk"}, format="json"), 402,
          "payment_required")
    assert len(ok(clients["bob"].get(f"{V1}/contacts"))) == 2  # reading stays possible


# --- groups ---------------------------------------------------------------------------------------------------


def test_groups_list_and_detail(named, clients, acme_directory):
    group = acme_directory["group"]
    listed = ok(clients["bob"].get(f"{V1}/groups"))
    assert listed == [{"id": group.pk, "session": "front-desk", "jid": GROUP, "name": "Team", "topic": "Daily",
                       "participant_count": 2, "synced_at": listed[0]["synced_at"],
                       "created_at": listed[0]["created_at"]}]
    assert listed[0]["synced_at"] is not None
    detail = ok(clients["bob"].get(f"{V1}/groups/{group.pk}"))
    assert detail["participants"] == [{"jid": PEER_JID, "phone": PEER, "is_admin": True},
                                      {"jid": OTHER_JID, "phone": OTHER, "is_admin": False}]
    assert ok(clients["bob"].get(f"{V1}/groups?session=front-desk")) == listed
    error(clients["bob"].get(f"{V1}/groups/{group.pk + 1000}"), 404, "not_found")


# --- conversations --------------------------------------------------------------------------------------------


def test_conversations_newest_activity_first_with_their_summary(named, clients, acme_directory):
    with tenant_context(named.acme):  # one conversation with no message yet sorts last
        Conversation.objects.create(session=acme_directory["session"], chat_jid=OTHER_JID,
                                    contact=acme_directory["ann"])
    rows = ok(clients["alice"].get(f"{V1}/conversations"))
    assert [r["chat"] for r in rows] == [GROUP, PEER_JID, OTHER_JID]
    group_row, budi_row = rows[0], rows[1]
    assert (group_row["kind"], group_row["title"], group_row["contact"]) == ("group", "Team", None)
    assert group_row["group"] == {"id": acme_directory["group"].pk, "jid": GROUP, "name": "Team", "participants": 2}
    assert budi_row["kind"] == "contact" and budi_row["unread_count"] == 2
    assert budi_row["last_message_preview"] == "second" and budi_row["contact"]["phone"] == PEER
    assert budi_row["session"] == "front-desk" and budi_row["last_message_at"]
    assert ok(clients["alice"].get(f"{V1}/conversations?session=front-desk")) == rows
    error(clients["alice"].get(f"{V1}/conversations?session=nope"), 404, "not_found")


def test_conversation_messages_newest_first(named, clients, acme_directory):
    chat = acme_directory["budi_chat"]
    body = clients["bob"].get(f"{V1}/conversations/{chat.pk}/messages?limit=1").json()
    assert body["pagination"] == {"page": 1, "limit": 1, "total": 2, "pages": 2}
    (latest,) = body["data"]
    assert latest["text"] == "second" and latest["direction"] == "in" and latest["conversation_id"] == chat.pk
    with tenant_context(named.acme):
        assert latest == message_payload(Message.objects.get(pk=latest["id"]))
    older = ok(clients["bob"].get(f"{V1}/conversations/{chat.pk}/messages?page=2&limit=1"))
    assert [m["text"] for m in older] == ["first"]
    error(clients["bob"].get(f"{V1}/conversations/{chat.pk + 1000}/messages"), 404, "not_found")


# --- the cross-tenant matrix ----------------------------------------------------------------------------------


def _unused_pk(*tenants, model):
    """A primary key free in every given tenant's table, so a row made with it exists in one schema only."""
    top = 0
    for tenant in tenants:
        with tenant_context(tenant):
            top = max(top, model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0)
    return top + 1000


def _plant(tenant, other, session):
    """A contact, group and conversation in `tenant` whose ids exist nowhere in `other`."""
    with tenant_context(tenant):
        contact = Contact.objects.create(pk=_unused_pk(tenant, other, model=Contact), session=session,
                                         jid="19995550100@s.whatsapp.net", phone="+19995550100", name="Planted")
        group = Group.objects.create(pk=_unused_pk(tenant, other, model=Group), session=session,
                                     jid="1999@g.us", name="Planted group")
        conversation = Conversation.objects.create(pk=_unused_pk(tenant, other, model=Conversation),
                                                   session=session, chat_jid=contact.jid, contact=contact)
    return {"contact": contact.pk, "group": group.pk, "conversation": conversation.pk}


def test_another_tenants_directory_is_invisible_and_404(named, clients, acme_directory, globex_directory):
    carol, alice, bob = clients["carol"], clients["alice"], clients["bob"]
    acme_ids = _plant(named.acme, named.globex, acme_directory["session"])
    globex_ids = _plant(named.globex, named.acme, globex_directory["session"])

    # Lists show only the caller's own rows.
    assert {c["jid"] for c in ok(carol.get(f"{V1}/contacts"))} == {OTHER_JID, "19995550100@s.whatsapp.net"}
    assert {c["session"] for c in ok(carol.get(f"{V1}/contacts"))} == {"globex-line"}
    assert {g["name"] for g in ok(carol.get(f"{V1}/groups"))} == {"Globex team", "Planted group"}
    assert "globex secret" in str(ok(carol.get(f"{V1}/conversations")))
    for client in (alice, bob):
        assert "globex secret" not in str(ok(client.get(f"{V1}/conversations")))
        assert {c["session"] for c in ok(client.get(f"{V1}/contacts"))} == {"front-desk"}
        assert "Globex team" not in str(ok(client.get(f"{V1}/groups")))

    def reads(client, ids):
        return [client.get(f"{V1}/contacts/{ids['contact']}"), client.get(f"{V1}/groups/{ids['group']}"),
                client.get(f"{V1}/conversations/{ids['conversation']}/messages")]

    # Each tenant reaches its own planted rows …
    for client, ids in ((alice, acme_ids), (bob, acme_ids), (carol, globex_ids)):
        for response in reads(client, ids):
            ok(response)
    # … and the other tenant's are 404, as unknown ones are; deleting them too.
    for client, theirs, their_session in ((alice, globex_ids, "globex-line"), (bob, globex_ids, "globex-line"),
                                          (carol, acme_ids, "front-desk")):
        for response in reads(client, theirs):
            error(response, 404, "not_found")
        error(client.delete(f"{V1}/contacts/{theirs['contact']}"), 404, "not_found")
        for url in ("contacts", "groups", "conversations"):
            error(client.get(f"{V1}/{url}?session={their_session}"), 404, "not_found")
        error(client.post(f"{V1}/contacts/sync", {"session": their_session}, format="json"), 404, "not_found")
    with tenant_context(named.acme):
        assert Contact.objects.filter(pk=acme_ids["contact"]).exists()
    with tenant_context(named.globex):
        assert Contact.objects.filter(pk=globex_ids["contact"]).exists()


def test_the_api_needs_a_principal(client):
    for url in (f"{V1}/contacts", f"{V1}/groups", f"{V1}/conversations", f"{V1}/conversations/1/messages"):
        error(client.get(url), 401, "not_authenticated")
    error(client.post(f"{V1}/contacts/sync", {"session": "front-desk"}), 401, "not_authenticated")
