"""Syncing contacts and groups from the linked phone: POST /api/v1/contacts/sync → the host holding the session
→ provider.fetch_contacts / fetch_groups → whatsapp.conversations.actions.apply_sync, with the in-process simulator host
(whatsapp.tests.support); a provider error becomes session activity, never a crash. And the neonize side: its
protobuf Contact / GroupInfo translated, read through a fake Go handle with the process-wide lock held.
"""
import pytest
from django_tenants.utils import tenant_context

from whatsapp.models import Contact, Conversation, Group, Message, SessionActivity, WhatsAppSession
from whatsapp.providers import neonize as nzmod
from whatsapp.providers.base import ProviderError
from whatsapp.providers.simulator import simulated_address_book
from whatsapp.providers.tests.test_neonize_provider import (  # noqa: F401 (fixtures)
    FakeGo,
    attach,
    connect_resumed,
    events,
    jid,
    make,
    nz,
    providers,
)
from whatsapp.tests.support import error, link_session, ok, settle

V1 = "/api/v1"


def connect(named, clients, host, clock, name="front-desk"):
    """Create, start and link a session of Acme; returns (its provider, the session)."""
    provider = link_session(clients["alice"], host, clock, name)
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.get(name=name)
    assert session.status == WhatsAppSession.Status.CONNECTED
    return provider, session


def sync(client, host, clock, name="front-desk"):
    data = ok(client.post(f"{V1}/contacts/sync", {"session": name}, format="json"), 202)
    assert data == {"status": "syncing", "session": name}
    settle(host, clock)


@pytest.mark.django_db(transaction=True)
def test_a_sync_reads_the_phones_address_book_into_the_directory(named, clients, host, clock):
    provider, session = connect(named, clients, host, clock)
    expected_contacts, expected_groups = simulated_address_book(provider.session_key)

    sync(clients["bob"], host, clock)  # any member may ask

    with tenant_context(named.acme):
        contacts = {c.jid: c for c in Contact.objects.filter(session=session)}
        assert set(contacts) == {c["jid"] for c in expected_contacts}
        for entry in expected_contacts:
            contact = contacts[entry["jid"]]
            assert (contact.phone, contact.name, contact.push_name, contact.source) == (
                entry["phone"], entry["name"], entry["push_name"], Contact.Source.SYNC)
            assert contact.lid == (entry["lid"] or "")
        (group,) = Group.objects.filter(session=session)
        assert (group.jid, group.name, group.topic) == (expected_groups[0]["jid"], "Simulated team",
                                                        "Made up by the simulator")
        assert [p["phone"] for p in group.participants] == [c["phone"] for c in expected_contacts]
        assert group.synced_at is not None

    # The phone's book changes (a rename, a new contact, a lid learnt for a sender we only knew by it); a
    # second sync updates in place and resolves the earlier @lid contact.
    lid = "55501234@lid"
    with tenant_context(named.acme):
        known_by_lid = Contact.objects.create(session=session, jid=lid, lid=lid, push_name="Mystery")
        hidden = Message.objects.create(session=session, direction="in", status="received", chat_jid=lid,
                                        sender_jid=lid, sender_unresolved=True, contact=known_by_lid)
    renamed = dict(expected_contacts[0], name="Ada L.")
    provider.simulate_contacts([renamed, {"jid": "4915112345678@s.whatsapp.net", "phone": "+4915112345678",
                                          "name": "Mystery Person", "push_name": "", "lid": lid}],
                               [dict(expected_groups[0], name="Renamed team")])
    sync(clients["alice"], host, clock)
    with tenant_context(named.acme):
        assert Contact.objects.get(jid=renamed["jid"]).name == "Ada L."
        mystery = Contact.objects.get(phone="+4915112345678")
        assert (mystery.lid, mystery.push_name) == (lid, "Mystery")
        assert not Contact.objects.filter(jid=lid).exists()
        hidden.refresh_from_db()
        assert (hidden.contact, hidden.from_phone, hidden.sender_unresolved) == (mystery, "+4915112345678", False)
        assert Contact.objects.filter(session=session).count() == 4 and Group.objects.get().name == "Renamed team"


@pytest.mark.django_db(transaction=True)
def test_a_sync_the_phone_cannot_answer_is_logged_not_raised(named, clients, host, clock):
    provider, session = connect(named, clients, host, clock)
    # The database still says connected, the provider has just lost the connection.
    provider.simulate_disconnect("phone offline")
    with tenant_context(named.acme):
        WhatsAppSession.objects.filter(pk=session.pk).update(status=WhatsAppSession.Status.CONNECTED)
    ok(clients["alice"].post(f"{V1}/contacts/sync", {"session": "front-desk"}, format="json"), 202)
    with tenant_context(named.acme):
        errors = list(SessionActivity.objects.filter(session=session, kind=SessionActivity.Kind.ERROR)
                      .values_list("message", flat=True))
        assert errors == ["Contact sync failed (not_connected: the session is not connected to WhatsApp)"]
        assert not Contact.objects.exists() and not Group.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_sync_before_the_phone_is_linked_is_refused(named, clients, host, clock):
    ok(clients["alice"].post(f"{V1}/sessions", {"name": "front-desk"}, format="json"), 201)
    ok(clients["alice"].post(f"{V1}/sessions/front-desk/start", {}, format="json"), 202)
    settle(host, clock)
    err = error(clients["alice"].post(f"{V1}/contacts/sync", {"session": "front-desk"}, format="json"), 409,
                "session_not_connected")
    assert err["details"] == {"status": "qr"}


@pytest.mark.django_db(transaction=True)
def test_a_sync_touches_only_its_own_tenant(named, clients, host, clock):
    connect(named, clients, host, clock)
    sync(clients["alice"], host, clock)
    with tenant_context(named.globex):
        assert not Contact.objects.exists() and not Group.objects.exists() and not Conversation.objects.exists()
    assert ok(clients["carol"].get(f"{V1}/contacts")) == []


# --- neonize ----------------------------------------------------------------------------------------------------


class FakeDirectoryGo(FakeGo):
    """Also answers whatsmeow's contact store and joined groups, checking the process-wide lock."""

    contacts = ()
    groups = ()

    def GetAllContacts(self, uuid):
        self._record("GetAllContacts")
        return self.nz.proto.ContactsGetAllContactsReturnFunction(
            Contact=list(self.contacts)).SerializePartialToString()

    def GetJoinedGroups(self, uuid):
        self._record("GetJoinedGroups")
        return self.nz.proto.GetJoinedGroupsReturnFunction(Group=list(self.groups)).SerializePartialToString()


def neonize_book(nz):
    info = nz.proto.ContactInfo
    contacts = [
        nz.proto.Contact(JID=jid(nz, "6281234567890"), Info=info(Found=True, FirstName="Budi",
                                                                 FullName="Budi Santoso", PushName="Budi S")),
        nz.proto.Contact(JID=jid(nz, "12345678901234", server="lid"), Info=info(Found=True, PushName="Hidden")),
        nz.proto.Contact(JID=jid(nz, "14155550199"), Info=info(Found=True, BusinessName="Ann's Bakery")),
    ]
    group = nz.proto.GroupInfo(
        JID=jid(nz, "120363025246125486", server="g.us"),
        GroupName=nz.proto.GroupName(Name="Team"), GroupTopic=nz.proto.GroupTopic(Topic="Daily"),
        Participants=[
            nz.proto.GroupParticipant(JID=jid(nz, "6281234567890"), IsAdmin=True),
            nz.proto.GroupParticipant(JID=jid(nz, "555000111", server="lid"),
                                      PhoneNumber=jid(nz, "14155550199"), IsSuperAdmin=True),
            nz.proto.GroupParticipant(JID=jid(nz, "777000222", server="lid")),
        ])
    return contacts, [group]


EXPECTED_CONTACTS = [
    {"jid": "6281234567890@s.whatsapp.net", "phone": "+6281234567890", "name": "Budi Santoso",
     "push_name": "Budi S", "lid": None},
    {"jid": "12345678901234@lid", "phone": None, "name": "", "push_name": "Hidden", "lid": "12345678901234@lid"},
    {"jid": "14155550199@s.whatsapp.net", "phone": "+14155550199", "name": "Ann's Bakery", "push_name": "",
     "lid": None},
]
EXPECTED_GROUP = {"jid": "120363025246125486@g.us", "name": "Team", "topic": "Daily", "participants": [
    {"jid": "6281234567890@s.whatsapp.net", "phone": "+6281234567890", "is_admin": True},
    {"jid": "555000111@lid", "phone": "+14155550199", "is_admin": True},
    {"jid": "777000222@lid", "phone": None, "is_admin": False},
]}


def test_neonize_translates_its_contacts_and_groups(nz):
    contacts, groups = neonize_book(nz)
    assert [nzmod.contact_entry(c) for c in contacts] == EXPECTED_CONTACTS
    assert nzmod.group_entry(groups[0]) == EXPECTED_GROUP


def test_neonize_reads_contacts_and_groups_from_go_under_the_lock(nz, make):
    provider = make()
    with pytest.raises(ProviderError) as refused:
        provider.fetch_contacts()
    assert refused.value.code == "not_connected"

    run, client = connect_resumed(nz, provider)
    fake = FakeDirectoryGo(nz)
    fake.contacts, fake.groups = neonize_book(nz)
    client._NewClient__client = nzmod._LockedLibrary(fake, client)
    client.contact._ContactStore__client = nzmod._LockedLibrary(fake, client)

    assert provider.fetch_contacts() == EXPECTED_CONTACTS
    assert provider.fetch_groups() == [EXPECTED_GROUP]
    assert [(name, locked) for name, locked, _ in fake.calls] == [("GetAllContacts", True),
                                                                    ("GetJoinedGroups", True)]


def test_neonize_contact_store_errors_become_provider_errors(nz, make):
    provider = make()
    run, client = connect_resumed(nz, provider)

    class Failing(FakeDirectoryGo):
        def GetAllContacts(self, uuid):
            return self.nz.proto.ContactsGetAllContactsReturnFunction(Error="store closed").SerializePartialToString()

    client.contact._ContactStore__client = nzmod._LockedLibrary(Failing(nz), client)
    with pytest.raises(ProviderError) as failed:
        provider.fetch_contacts()
    assert failed.value.code == "sync_failed" and "store closed" in str(failed.value)


def test_a_real_neonize_client_puts_its_contact_store_behind_the_lock(nz, make):
    provider = make()
    run, client = attach(provider)
    assert isinstance(client.contact._ContactStore__client, nzmod._LockedLibrary)
