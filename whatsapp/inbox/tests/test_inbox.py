"""The shared inbox: conversations open / pending / closed, assigned by hand or by round robin among the agents,
filtered mine / unassigned / all with unread counts, over the API and on the pages; audited; a viewer may not
assign; another tenant's member or conversation is 404.

Acme: alice (owner), bob (agent), dave (agent), vera (viewer); Globex: carol (owner).
"""
import re
import time

import pytest
from django_tenants.utils import tenant_context

from accounts.models import Membership
from audit.models import AuditLog
from conftest import make_user
from whatsapp.inbox import presence
from whatsapp.messaging import actions as messaging
from whatsapp.models import Conversation, WhatsAppSession
from whatsapp.tests.support import error, ok

V1 = "/api/v1"


@pytest.fixture
def team(named, api_as):
    """Acme's members by name (Membership rows) and their API clients."""
    dave = make_user("dave@acme.test", full_name="Dave Agent")
    vera = make_user("vera@acme.test", full_name="Vera Viewer")
    Membership.objects.create(user=dave, tenant=named.acme, role=Membership.Role.AGENT)
    Membership.objects.create(user=vera, tenant=named.acme, role=Membership.Role.VIEWER)
    members = {m.user.email.split("@")[0]: m for m in Membership.objects.select_related("user")}
    clients = {name: api_as(user) for name, user in
               (("alice", named.alice), ("bob", named.bob), ("dave", dave), ("vera", vera), ("carol", named.carol))}
    return members, clients


@pytest.fixture
def chats(named):
    """Three conversations in Acme, each with one unread inbound message."""
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.create(name="front-desk", phone="+14155550123",
                                                 status=WhatsAppSession.Status.CONNECTED)
        found = []
        for n, digits in enumerate(("6281234567890", "6281234567891", "6281234567892")):
            jid = f"{digits}@s.whatsapp.net"
            message = messaging.store_inbound(session, {"id": f"IN{n}", "chat": jid, "sender": jid,
                                                        "sender_phone": f"+{digits}", "from_me": False,
                                                        "type": "text", "text": f"hello {n}"})
            found.append(message.conversation.pk)
        return found


def ids(response):
    return sorted(row["id"] for row in ok(response))


def test_round_robin_gives_conversations_to_the_agents_in_turn(named, team, chats):
    members, clients = team
    got = [ok(clients["alice"].post(f"{V1}/conversations/{pk}/assign", {}, format="json"))["assignee_id"]
           for pk in (*chats, chats[0])]
    # The agents in membership order (bob before dave), then bob again; the owner and the viewer take no turn.
    assert got == [members["bob"].pk, members["dave"].pk, members["bob"].pk, members["dave"].pk]
    with tenant_context(named.acme):
        rows = AuditLog.objects.filter(action="whatsapp.conversation_assigned")
        assert rows.count() == 4 and all(row.after["how"] == "round_robin" for row in rows)
        assert {row.actor_id for row in rows} == {named.alice.pk}


def test_round_robin_prefers_the_agents_online(named, team, chats):
    members, clients = team
    bob, dave = members["bob"].pk, members["dave"].pk
    schema = named.acme.schema_name
    presence.seen(schema, dave, "page-1")  # dave has the inbox open; bob does not
    presence.seen(schema, members["alice"].pk, "page-2")  # an owner online changes nothing while an agent is
    got = [ok(clients["alice"].post(f"{V1}/conversations/{pk}/assign", {}, format="json"))["assignee_id"]
           for pk in chats[:2]]
    assert got == [dave, dave]
    presence.seen(schema, bob, "page-3")
    assert ok(clients["alice"].post(f"{V1}/conversations/{chats[2]}/assign", {}, format="json"))["assignee_id"] == bob
    assert presence.gone(schema, bob, "page-3") and presence.gone(schema, dave, "page-1")
    assert presence.online_member_ids(schema) == {members["alice"].pk}
    # Nobody of the pool online: every agent takes a turn again (after bob: dave).
    assert ok(clients["alice"].post(f"{V1}/conversations/{chats[0]}/assign", {}, format="json"))["assignee_id"] == dave


def test_presence_expires_and_counts_a_member_once_across_pages(named, team):
    members, _ = team
    schema, bob = named.acme.schema_name, members["bob"].pk
    assert presence.seen(schema, bob, "tab-1") is True  # came online
    assert presence.seen(schema, bob, "tab-2") is False  # already was
    assert presence.gone(schema, bob, "tab-1") is False  # another tab still open
    assert presence.online_member_ids(schema) == {bob}
    later = time.time() + presence.ONLINE_SECONDS + 1  # a crashed tab: never heard from again
    assert presence.online_member_ids(schema, now=later) == set()


def test_without_agents_round_robin_turns_to_everyone_who_answers(named, chats, api_as):
    Membership.objects.filter(user=named.bob).update(role=Membership.Role.VIEWER)
    alice = api_as(named.alice)
    owner = Membership.objects.get(user=named.alice).pk
    assert ok(alice.post(f"{V1}/conversations/{chats[0]}/assign", {}, format="json"))["assignee_id"] == owner
    Membership.objects.filter(user=named.alice).delete()  # nobody left who answers: bob is a viewer
    error(api_as(named.bob).post(f"{V1}/conversations/{chats[0]}/assign", {}, format="json"), 403,
          "permission_denied")


def test_assign_by_hand_unassign_and_filters(named, team, chats):
    members, clients = team
    bob, dave = members["bob"].pk, members["dave"].pk
    data = ok(clients["alice"].post(f"{V1}/conversations/{chats[0]}/assign", {"member_id": bob}, format="json"))
    assert data["assignee_id"] == bob and data["assigned_at"] and data["status"] == "open"
    ok(clients["bob"].post(f"{V1}/conversations/{chats[1]}/assign", {"member_id": dave}, format="json"))

    assert ids(clients["bob"].get(f"{V1}/conversations?assigned=mine")) == [chats[0]]
    assert ids(clients["dave"].get(f"{V1}/conversations?assigned=mine")) == [chats[1]]
    assert ids(clients["alice"].get(f"{V1}/conversations?assigned=mine")) == []
    assert ids(clients["vera"].get(f"{V1}/conversations?assigned=unassigned")) == [chats[2]]
    assert ids(clients["vera"].get(f"{V1}/conversations?assigned=all")) == sorted(chats)
    assert ids(clients["vera"].get(f"{V1}/conversations")) == sorted(chats)

    # Unassigning; and a member who leaves: their conversations count as unassigned.
    data = ok(clients["bob"].post(f"{V1}/conversations/{chats[0]}/assign", {"member_id": None}, format="json"))
    assert data["assignee_id"] is None and data["assigned_at"] is None
    members["dave"].delete()
    assert ids(clients["alice"].get(f"{V1}/conversations?assigned=unassigned")) == sorted(chats)
    with tenant_context(named.acme):
        assert AuditLog.objects.filter(action="whatsapp.conversation_unassigned", actor=named.bob).count() == 1
        assert AuditLog.objects.filter(action="whatsapp.conversation_assigned").count() == 2

    error(clients["alice"].get(f"{V1}/conversations?assigned=theirs"), 400, "invalid_filter")
    error(clients["alice"].get(f"{V1}/conversations?status=archived"), 400, "invalid_filter")


def test_status_changes_filters_counts_and_a_new_message_reopens(named, team, chats):
    members, clients = team
    bob = members["bob"].pk
    ok(clients["alice"].post(f"{V1}/conversations/{chats[0]}/assign", {"member_id": bob}, format="json"))
    data = ok(clients["bob"].patch(f"{V1}/conversations/{chats[0]}", {"status": "closed"}, format="json"))
    assert data["status"] == "closed"
    ok(clients["bob"].patch(f"{V1}/conversations/{chats[1]}", {"status": "pending"}, format="json"))
    assert ok(clients["bob"].patch(f"{V1}/conversations/{chats[2]}", {}, format="json"))["status"] == "open"
    assert ids(clients["bob"].get(f"{V1}/conversations?status=closed")) == [chats[0]]
    assert ids(clients["bob"].get(f"{V1}/conversations?status=open&assigned=unassigned")) == [chats[2]]
    assert ok(clients["vera"].get(f"{V1}/conversations/{chats[1]}"))["status"] == "pending"

    counts = ok(clients["bob"].get(f"{V1}/conversations/counts"))
    assert counts["status"] is None
    assert counts["mine"] == {"conversations": 1, "unread_conversations": 1, "unread_messages": 1}
    assert counts["unassigned"] == {"conversations": 2, "unread_conversations": 2, "unread_messages": 2}
    assert counts["all"]["conversations"] == 3 and counts["all"]["unread_messages"] == 3
    with tenant_context(named.acme):
        inbox_row = Conversation.objects.get(pk=chats[2])
        from whatsapp.conversations import actions as conversations
        conversations.mark_read(inbox_row)
    counts = ok(clients["bob"].get(f"{V1}/conversations/counts?status=open"))
    assert counts["status"] == "open" and counts["all"] == {"conversations": 1, "unread_conversations": 0,
                                                             "unread_messages": 0}
    error(clients["bob"].get(f"{V1}/conversations/counts?status=gone"), 400, "invalid_filter")

    # The contact writes again: the closed conversation is open again, unread.
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.get()
        jid = Conversation.objects.get(pk=chats[0]).chat_jid
        messaging.store_inbound(session, {"id": "IN-again", "chat": jid, "sender": jid, "from_me": False,
                                          "sender_phone": "+" + jid.split("@")[0], "type": "text", "text": "again"})
        assert Conversation.objects.get(pk=chats[0]).status == "open"
        changes = AuditLog.objects.filter(action="whatsapp.conversation_status_changed")
        assert [(row.before["status"], row.after["status"]) for row in changes.order_by("id")] == [
            ("open", "closed"), ("open", "pending")]
    error(clients["bob"].patch(f"{V1}/conversations/{chats[0]}", {"status": "archived"}, format="json"), 400,
          "validation_error")


def test_who_may_assign_and_isolation(named, team, chats):
    members, clients = team
    vera, carol = members["vera"].pk, members["carol"].pk
    # A viewer reads but neither assigns nor changes a status.
    error(clients["vera"].post(f"{V1}/conversations/{chats[0]}/assign", {"member_id": members["bob"].pk},
                               format="json"), 403, "permission_denied")
    error(clients["vera"].post(f"{V1}/conversations/{chats[0]}/assign", {}, format="json"), 403, "permission_denied")
    error(clients["vera"].patch(f"{V1}/conversations/{chats[0]}", {"status": "closed"}, format="json"), 403,
          "permission_denied")
    # Nobody is given a conversation they could not answer; another workspace's member is not found.
    error(clients["alice"].post(f"{V1}/conversations/{chats[0]}/assign", {"member_id": vera}, format="json"), 400,
          "assignee_cannot_reply")
    error(clients["alice"].post(f"{V1}/conversations/{chats[0]}/assign", {"member_id": carol}, format="json"), 404,
          "not_found")
    error(clients["alice"].post(f"{V1}/conversations/{chats[0]}/assign", {"member_id": 999999}, format="json"), 404,
          "not_found")
    error(clients["alice"].post(f"{V1}/conversations/{chats[0]}/assign", {"member_id": "bob"}, format="json"), 400,
          "validation_error")
    error(clients["alice"].post(f"{V1}/conversations/{chats[0]}/assign", {"who": 1}, format="json"), 400,
          "validation_error")
    # Globex sees none of Acme's conversations (its schema does not hold them).
    with tenant_context(named.globex):
        assert not Conversation.objects.exists()
    error(clients["carol"].post(f"{V1}/conversations/{chats[0]}/assign", {}, format="json"), 404, "not_found")
    error(clients["carol"].patch(f"{V1}/conversations/{chats[0]}", {"status": "closed"}, format="json"), 404,
          "not_found")
    error(clients["carol"].get(f"{V1}/conversations/{chats[0]}"), 404, "not_found")
    assert ok(clients["carol"].get(f"{V1}/conversations/counts"))["all"]["conversations"] == 0
    with tenant_context(named.acme):
        assert not Conversation.objects.filter(assignee_id__isnull=False).exists()
        assert set(Conversation.objects.values_list("status", flat=True)) == {"open"}


def test_the_pages_assign_change_status_and_filter(named, team, chats, client):
    members, _ = team
    bob = members["bob"].pk
    client.force_login(named.bob)
    page = f"/conversations/{chats[0]}/"
    taken = client.post(page, {"action": "assign_me"})
    assert taken.status_code == 302 and taken.url == page
    shown = client.get(page)
    assert b"Assigned to Bob Member" in shown.content
    assert client.post(page, {"action": "set_status", "status": "pending"}).status_code == 302
    given = client.post(f"/conversations/{chats[1]}/", {"action": "round_robin"})
    assert given.status_code == 302
    with tenant_context(named.acme):
        assert Conversation.objects.get(pk=chats[0]).assignee_id == bob
        assert Conversation.objects.get(pk=chats[0]).status == "pending"
        assert Conversation.objects.get(pk=chats[1]).assignee_id in (bob, members["dave"].pk)

    mine = client.get("/conversations/?assigned=mine&status=pending")
    assert mine.status_code == 200 and f'data-testid="conversation-row-{chats[0]}"'.encode() in mine.content
    assert f'data-testid="conversation-row-{chats[2]}"'.encode() not in mine.content
    everything = client.get("/conversations/?assigned=all&status=open")
    assert f'data-testid="conversation-row-{chats[2]}"'.encode() in everything.content
    assert f'data-testid="conversation-row-{chats[0]}"'.encode() not in everything.content
    # The tabs: with unread messages, one conversation nobody has (chats[2]); bob's two are not open or not unread.
    badge = re.search(rb'data-testid="tab-unassigned-unread"[^>]*>(\d+)<', everything.content)
    assert badge and badge.group(1) == b"1"
    assert re.search(rb'data-testid="tab-all-count"[^>]*>\((\d+)\)<', everything.content).group(1) == b"2"

    refused = client.post(page, {"action": "assign", "member": members["vera"].pk}, follow=True)
    assert b"cannot answer them" in refused.content
    assert client.post(page, {"action": "assign", "member": members["carol"].pk}).status_code == 404
    assert client.post(page, {"action": "set_status", "status": "archived"}, follow=True).status_code == 200

    client.force_login(members["vera"].user)
    assert client.post(page, {"action": "assign_me"}).status_code == 403
    assert b'data-testid="assign"' not in client.get(page).content
    with tenant_context(named.acme):
        assert Conversation.objects.get(pk=chats[0]).assignee_id == bob
