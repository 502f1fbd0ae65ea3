"""Auto-assignment of new conversations: off (the default), round robin among the agents (online ones first), or
one fixed member, for the workspace or one number (its own setting wins); over the API and the page; audited;
bad input is a 4xx with a code and writes nothing; another workspace's member is 404.

A contact's first message comes from the simulated phone through an in-process session host.
Acme: alice (owner), bob (agent), dave (agent), vera (viewer); Globex: carol (owner).
"""
import pytest
from django_tenants.utils import tenant_context

from accounts.models import Membership
from audit.models import AuditLog
from conftest import make_user
from whatsapp.inbox import presence
from whatsapp.inbox.models import AutoAssign
from whatsapp.models import Conversation
from whatsapp.tests.support import drain, error, link_session, ok

V1 = "/api/v1"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def team(named, api_as):
    dave = make_user("dave@acme.test", full_name="Dave Agent")
    vera = make_user("vera@acme.test", full_name="Vera Viewer")
    Membership.objects.create(user=dave, tenant=named.acme, role=Membership.Role.AGENT)
    Membership.objects.create(user=vera, tenant=named.acme, role=Membership.Role.VIEWER)
    members = {m.user.email.split("@")[0]: m for m in Membership.objects.select_related("user")}
    clients = {name: api_as(user) for name, user in
               (("alice", named.alice), ("bob", named.bob), ("vera", vera), ("carol", named.carol))}
    return members, clients


def inbound(client, host, sender, text="Hello", session="front-desk"):
    ok(client.post(f"{V1}/test-helpers/sessions/{session}/inbound", {"from": sender, "text": text}, format="json"),
       202)
    drain(host)


def assignee(tenant, sender):
    with tenant_context(tenant):
        return Conversation.objects.get(chat_jid=f"{sender.lstrip('+')}@s.whatsapp.net").assignee_id


def test_new_conversations_follow_the_setting_round_robin_a_member_or_nobody(named, team, host, clock):
    members, clients = team
    alice = clients["alice"]
    link_session(alice, host, clock)
    inbound(alice, host, "+6281200000001")
    assert assignee(named.acme, "+6281200000001") is None  # off by default

    got = ok(alice.put(f"{V1}/inbox/auto-assign", {"mode": "round_robin"}, format="json"))
    assert got == {**got, "scope": "workspace", "mode": "round_robin", "member_id": None, "own": True}
    presence.seen(named.acme.schema_name, members["dave"].pk, "page-1")  # dave has the inbox open, bob not
    inbound(alice, host, "+6281200000002")
    inbound(alice, host, "+6281200000003")
    assert [assignee(named.acme, f"+628120000000{n}") for n in (2, 3)] == [members["dave"].pk] * 2
    presence.gone(named.acme.schema_name, members["dave"].pk, "page-1")
    inbound(alice, host, "+6281200000004")  # nobody online: every agent in turn
    assert assignee(named.acme, "+6281200000004") in (members["bob"].pk, members["dave"].pk)

    # Only a conversation's first message assigns it: one taken from its assignee stays unassigned.
    with tenant_context(named.acme):
        Conversation.objects.filter(chat_jid="6281200000002@s.whatsapp.net").update(assignee_id=None)
    inbound(alice, host, "+6281200000002", "Me again")
    assert assignee(named.acme, "+6281200000002") is None

    # The number's own setting wins over the workspace's: a fixed member.
    got = ok(alice.put(f"{V1}/sessions/front-desk/auto-assign", {"mode": "member", "member_id": members["bob"].pk},
                       format="json"))
    assert got["own"] is True and got["scope"] == "session" and got["member_id"] == members["bob"].pk
    inbound(alice, host, "+6281200000005")
    assert assignee(named.acme, "+6281200000005") == members["bob"].pk
    # Back to the workspace's (round robin), then the workspace's switched off.
    assert clients["alice"].delete(f"{V1}/sessions/front-desk/auto-assign").status_code == 204
    assert ok(alice.get(f"{V1}/sessions/front-desk/auto-assign"))["own"] is False
    ok(alice.put(f"{V1}/inbox/auto-assign", {"mode": "off"}, format="json"))
    inbound(alice, host, "+6281200000006")
    assert assignee(named.acme, "+6281200000006") is None

    with tenant_context(named.acme):
        automatic = AuditLog.objects.filter(action="whatsapp.conversation_assigned", actor__isnull=True)
        assert sorted(row.after["how"] for row in automatic) == ["auto_member"] + ["auto_round_robin"] * 3
        changes = AuditLog.objects.filter(action__startswith="whatsapp.auto_assign").order_by("id")
        assert [(row.action, row.actor_id) for row in changes] == [
            ("whatsapp.auto_assign_updated", named.alice.pk), ("whatsapp.auto_assign_updated", named.alice.pk),
            ("whatsapp.auto_assign_reset", named.alice.pk), ("whatsapp.auto_assign_updated", named.alice.pk)]


def test_bad_settings_are_refused_and_write_nothing(named, team, host, clock):
    members, clients = team
    alice = clients["alice"]
    link_session(alice, host, clock)
    error(alice.put(f"{V1}/inbox/auto-assign", {"mode": "member"}, format="json"), 400, "invalid_auto_assign")
    error(alice.put(f"{V1}/inbox/auto-assign", {"mode": "sometimes"}, format="json"), 400, "validation_error")
    error(alice.put(f"{V1}/inbox/auto-assign", {"mode": "member", "member_id": members["vera"].pk}, format="json"),
          400, "assignee_cannot_reply")
    # Another workspace's member is not found; so is another workspace's number.
    error(alice.put(f"{V1}/inbox/auto-assign", {"mode": "member", "member_id": members["carol"].pk},
                    format="json"), 404, "not_found")
    error(clients["carol"].get(f"{V1}/sessions/front-desk/auto-assign"), 404, "not_found")
    # A member reads; only owners and admins change it.
    assert ok(clients["bob"].get(f"{V1}/inbox/auto-assign"))["mode"] == "off"
    error(clients["bob"].put(f"{V1}/inbox/auto-assign", {"mode": "round_robin"}, format="json"), 403,
          "permission_denied")
    with tenant_context(named.acme):
        assert not AutoAssign.objects.exists()
        assert not AuditLog.objects.filter(action__startswith="whatsapp.auto_assign").exists()


def test_a_fixed_member_who_left_leaves_new_conversations_unassigned(named, team, host, clock):
    members, clients = team
    alice = clients["alice"]
    link_session(alice, host, clock)
    ok(alice.put(f"{V1}/inbox/auto-assign", {"mode": "member", "member_id": members["dave"].pk}, format="json"))
    members["dave"].delete()
    inbound(alice, host, "+6281200000007")
    assert assignee(named.acme, "+6281200000007") is None


def test_the_page_sets_the_workspace_and_a_number(named, team, host, clock, client):
    members, clients = team
    link_session(clients["alice"], host, clock)
    client.force_login(named.alice)
    page = client.get("/conversations/auto-assign/")
    assert page.status_code == 200 and b"Round robin among online agents" in page.content
    saved = client.post("/conversations/auto-assign/", {"scope": "workspace", "mode": "round_robin"})
    assert saved.status_code == 302 and saved["Location"] == "/conversations/auto-assign/"
    client.post("/conversations/auto-assign/", {"scope": "front-desk", "mode": "member",
                                                "member_id": str(members["bob"].pk)})
    refused = client.post("/conversations/auto-assign/", {"scope": "workspace", "mode": "member"}, follow=True)
    assert b"Choose the member" in refused.content
    assert client.post("/conversations/auto-assign/", {"scope": "nope", "mode": "off"}).status_code == 404
    with tenant_context(named.acme):
        assert {(r.scope.split(":")[0], r.mode, r.member_id) for r in AutoAssign.objects.all()} == {
            ("workspace", "round_robin", None), ("session", "member", members["bob"].pk)}
    client.post("/conversations/auto-assign/", {"scope": "front-desk", "mode": "workspace"})
    with tenant_context(named.acme):
        assert list(AutoAssign.objects.values_list("scope", flat=True)) == ["workspace"]
    # A member sees the page; a member's POST is refused.
    client.force_login(named.bob)
    assert client.get("/conversations/auto-assign/").status_code == 200
    assert client.post("/conversations/auto-assign/", {"scope": "workspace", "mode": "off"}).status_code == 403
