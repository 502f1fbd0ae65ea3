"""The team of a workspace: invitations by email (API and accept page), roles, removal, ownership transfer.

alice owns Acme (Basic plan: 3 members), bob is an agent there, carol owns Globex.
"""
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from accounts import members
from accounts.models import ApiKey, Invitation, Membership
from audit.models import AuditLog
from conftest import PASSWORD, make_user
from core.permissions import Role

V1 = "/api/v1"
pytestmark = pytest.mark.django_db


def ok(response, status=200):
    assert response.status_code == status, response.content
    return response.json()["data"]


def error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code, body
    return body["error"]


def link_in(message):
    return re.search(r"http\S+/invitations/(\S+)/", message.body).group(0)


def path_of(link):
    return link[link.index("/invitations/"):]


@pytest.fixture
def alice(named, api_as):
    return api_as(named.alice)


def invite(client, email, role="agent", capture=None):
    return client.post(f"{V1}/invitations", {"email": email, "role": role}, format="json")


def test_invite_sends_a_link_valid_seven_days_and_is_audited(named, alice, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        data = ok(invite(alice, "Dora@Example.com", "viewer"), 201)
    assert data["email"] == "dora@example.com" and data["role"] == "viewer" and data["status"] == "pending"
    invitation = Invitation.objects.get(pk=data["id"])
    assert timedelta(days=6, hours=23) < invitation.expires_at - timezone.now() <= timedelta(days=7)
    [message] = mail.outbox
    assert message.to == ["dora@example.com"] and "Acme" in message.subject and "viewer" in message.body
    assert link_in(message)
    row = AuditLog.objects.get(action="member.invited")
    assert row.actor == named.alice and row.tenant == named.acme and row.after["email"] == "dora@example.com"
    listed = ok(alice.get(f"{V1}/invitations?status=pending"))
    assert [i["email"] for i in listed] == ["dora@example.com"]
    # POST /members is the same invitation (revoking dora's frees the plan's third seat for it).
    assert alice.delete(f"{V1}/invitations/{data['id']}").status_code == 204
    assert ok(alice.post(f"{V1}/members", {"email": "eve@example.com", "role": "admin"}, format="json"),
              201)["status"] == "pending"


def test_bad_invitations_are_refused_with_their_reason(named, alice):
    error(invite(alice, "bob@acme.test"), 409, "already_member")
    ok(invite(alice, "dora@example.com"), 201)
    error(invite(alice, "DORA@example.com"), 409, "already_invited")
    error(invite(alice, "not an address"), 400, "invalid_email")
    error(invite(alice, "x@example.com", "owner"), 400, "validation_error")
    assert Invitation.objects.count() == 1


def test_pending_invitations_count_against_the_plans_member_limit(named, alice):
    ok(invite(alice, "dora@example.com"), 201)  # alice, bob and a pending invitation: 3 of 3
    err = error(invite(alice, "eve@example.com"), 402, "plan_limit_reached")
    assert err["details"]["billing_url"] == "/billing/" and err["details"]["in_use"] == 3
    dora = Invitation.objects.get(email="dora@example.com")
    assert alice.delete(f"{V1}/invitations/{dora.pk}").status_code == 204  # revoking frees the seat
    ok(invite(alice, "eve@example.com"), 201)


def test_agents_read_the_team_but_do_not_change_it_and_other_tenants_ids_are_404(named, alice, api_as):
    bob, carol = api_as(named.bob), api_as(named.carol)
    rows = ok(bob.get(f"{V1}/members"))
    assert {(r["email"], r["role"], r["two_factor"]) for r in rows} == {("alice@acme.test", "owner", False),
                                                                       ("bob@acme.test", "agent", False)}
    error(invite(bob, "dora@example.com"), 403, "permission_denied")
    bob_member = Membership.objects.get(user=named.bob)
    error(bob.patch(f"{V1}/members/{bob_member.pk}", {"role": "admin"}, format="json"), 403, "permission_denied")
    invitation = ok(invite(alice, "dora@example.com"), 201)
    error(carol.patch(f"{V1}/members/{bob_member.pk}", {"role": "viewer"}, format="json"), 404, "not_found")
    error(carol.delete(f"{V1}/members/{bob_member.pk}"), 404, "not_found")
    error(carol.delete(f"{V1}/invitations/{invitation['id']}"), 404, "not_found")
    assert ok(carol.get(f"{V1}/invitations")) == []
    assert Membership.objects.get(pk=bob_member.pk).role == Role.AGENT


def test_roles_change_but_never_the_owners(named, alice, api_as):
    bob_member = Membership.objects.get(user=named.bob)
    assert ok(alice.patch(f"{V1}/members/{bob_member.pk}", {"role": "admin"}, format="json"))["role"] == "admin"
    row = AuditLog.objects.get(action="member.role_changed")
    assert row.before["role"] == "agent" and row.after["role"] == "admin"
    bob = api_as(named.bob)  # an admin now: may manage members, never the owner
    owner = Membership.objects.get(user=named.alice)
    error(bob.patch(f"{V1}/members/{owner.pk}", {"role": "viewer"}, format="json"), 403, "owner_protected")
    error(bob.delete(f"{V1}/members/{owner.pk}"), 403, "owner_protected")
    error(alice.delete(f"{V1}/members/{owner.pk}"), 409, "last_owner")  # the last owner does not leave
    assert Membership.objects.get(pk=owner.pk).role == Role.OWNER


def test_removing_a_member_revokes_their_keys_at_once(named, alice, api_as):
    bob = api_as(named.bob)
    assert bob.get(f"{V1}/messages").status_code == 200
    bob_member = Membership.objects.get(user=named.bob)
    assert alice.delete(f"{V1}/members/{bob_member.pk}").status_code == 204
    error(bob.get(f"{V1}/messages"), 401, "api_key_revoked")
    assert not ApiKey.objects.filter(user=named.bob, tenant=named.acme, revoked_at__isnull=True).exists()
    row = AuditLog.objects.get(action="member.removed")
    assert row.before == {"email": "bob@acme.test", "role": "agent"} and len(row.after["api_keys_revoked"]) == 1


def _invite_and_link(alice_client, email, capture, role="agent"):
    with capture(execute=True):
        ok(invite(alice_client, email, role), 201)
    return path_of(link_in(mail.outbox[-1]))


def test_a_new_person_accepts_by_making_an_account_and_lands_in_the_workspace(named, alice,
                                                                             django_capture_on_commit_callbacks):
    link = _invite_and_link(alice, "dora@example.com", django_capture_on_commit_callbacks, "viewer")
    browser = Client()
    page = browser.get(link)
    assert page.status_code == 200 and b"Create account and join" in page.content
    refused = browser.post(link, {"full_name": "Dora", "password": "short"})
    assert refused.status_code == 400 and not Membership.objects.filter(user__email="dora@example.com").exists()
    done = browser.post(link, {"full_name": "Dora Viewer", "password": PASSWORD}, follow=True)
    assert done.redirect_chain[-1][0] == "/dashboard/" and b"Acme" in done.content
    membership = Membership.objects.get(user__email="dora@example.com")
    assert membership.tenant == named.acme and membership.role == Role.VIEWER
    assert Invitation.objects.get(email="dora@example.com").status == "accepted"
    assert AuditLog.objects.filter(action="member.joined", tenant=named.acme).exists()
    again = Client().get(link)
    assert again.status_code == 410 and b"accepted already" in again.content


def test_an_existing_user_logs_in_accepts_and_switches_between_workspaces(named, api_as,
                                                                           django_capture_on_commit_callbacks):
    carol = api_as(named.carol)  # Globex invites alice, who owns Acme
    link = _invite_and_link(carol, "alice@acme.test", django_capture_on_commit_callbacks, "admin")
    browser = Client()
    assert b"Log in to accept" in browser.get(link).content
    browser.force_login(named.alice)
    assert browser.post(link).status_code == 302
    assert browser.get("/dashboard/").context["tenant"] == named.globex  # the workspace just joined
    assert browser.post(f"/switch/{named.acme.pk}").status_code == 302
    assert browser.get("/dashboard/").context["tenant"] == named.acme
    assert Membership.objects.get(user=named.alice, tenant=named.globex).role == Role.ADMIN


def test_wrong_account_expired_revoked_and_resent_links(named, alice, django_capture_on_commit_callbacks):
    link = _invite_and_link(alice, "dora@example.com", django_capture_on_commit_callbacks)
    browser = Client()
    browser.force_login(named.bob)
    browser.post(link)
    assert not Membership.objects.filter(user__email="dora@example.com").exists()
    assert b"this invitation is for dora@example.com" in browser.get(link).content

    invitation = Invitation.objects.get(email="dora@example.com")
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Client().get(link).status_code == 410
    with django_capture_on_commit_callbacks(execute=True):
        members.resend_invitation(invitation, acting_user=named.alice)
    assert Client().get(link).status_code == 404  # the old link died with the resend
    new_link = path_of(link_in(mail.outbox[-1]))
    assert Client().get(new_link).status_code == 200
    members.revoke_invitation(invitation, acting_user=named.alice)
    revoked = Client().get(new_link)
    assert revoked.status_code == 410 and b"withdrawn" in revoked.content
    assert {r.action for r in AuditLog.objects.filter(tenant=named.acme)} >= {
        "member.invited", "member.invitation_resent", "member.invitation_revoked"}


def test_members_page_lists_invites_changes_roles_and_transfers_ownership(named, client,
                                                                         django_capture_on_commit_callbacks):
    client.force_login(named.alice)
    page = client.get("/members/")
    assert page.status_code == 200 and b"bob@acme.test" in page.content and b"Transfer ownership" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post("/members/", {"action": "invite", "email": "dora@example.com", "role": "agent"},
                           follow=True)
    assert done.redirect_chain[-1][0] == "/members/" and b"Invitation sent to dora@example.com" in done.content
    bob = Membership.objects.get(user=named.bob)
    client.post("/members/", {"action": "role", "member": bob.pk, "role": "admin"})
    assert Membership.objects.get(pk=bob.pk).role == Role.ADMIN

    refused = client.post("/members/", {"action": "transfer", "member": bob.pk, "password": "wrong"}, follow=True)
    assert b"not your password" in refused.content
    assert Membership.objects.get(user=named.alice, tenant=named.acme).role == Role.OWNER
    client.post("/members/", {"action": "transfer", "member": bob.pk, "password": PASSWORD})
    assert Membership.objects.get(pk=bob.pk).role == Role.OWNER
    assert Membership.objects.get(user=named.alice, tenant=named.acme).role == Role.ADMIN
    assert AuditLog.objects.filter(action="member.ownership_transferred", actor=named.alice).exists()


def test_the_plan_limit_on_the_page_offers_the_upgrade(named, client):
    client.force_login(named.alice)
    client.post("/members/", {"action": "invite", "email": "dora@example.com", "role": "agent"})
    page = client.post("/members/", {"action": "invite", "email": "eve@example.com", "role": "agent"}, follow=True)
    assert b"Upgrade on the Billing page" in page.content and b'data-testid="seats-full"' in page.content
    assert not Invitation.objects.filter(email="eve@example.com").exists()


def test_agents_see_the_team_page_without_its_controls(named, client):
    client.force_login(named.bob)
    page = client.get("/members/")
    assert page.status_code == 200 and b"Send invitation" not in page.content and b"Transfer" not in page.content
    assert client.post("/members/", {"action": "invite", "email": "x@example.com", "role": "agent"}).status_code == 403
    viewer = make_user("vera@acme.test")
    Membership.objects.create(user=viewer, tenant=named.acme, role=Role.VIEWER)
    client.force_login(viewer)
    assert client.post("/members/", {"action": "leave"}).status_code == 302
    assert not Membership.objects.filter(user=viewer).exists()


@pytest.fixture
def private_layer(settings):
    import uuid

    layers = {key: dict(value) for key, value in settings.CHANNEL_LAYERS.items()}
    layers["default"]["CONFIG"] = {**layers["default"]["CONFIG"], "prefix": f"sbtest:{uuid.uuid4().hex}"}
    settings.CHANNEL_LAYERS = layers


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("private_layer")
async def test_removing_a_member_closes_their_open_pages_at_once(named):
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.conf import settings

    from config.asgi import application

    def cookie_of(user):
        browser = Client()
        browser.force_login(user)
        return f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"

    cookie = await database_sync_to_async(cookie_of)(named.bob)
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost"), (b"cookie", cookie.encode())]
    sockets = [WebsocketCommunicator(application, path, headers=headers) for path in ("/ws/sessions/",
                                                                                      "/ws/conversations/")]
    for ws in sockets:
        connected, _ = await ws.connect()
        assert connected
    await sockets[1].receive_json_from(timeout=5)  # the conversations snapshot
    assert (await sockets[1].receive_json_from(timeout=5))["type"] == "members.presence"  # bob is online
    assert await sockets[0].receive_nothing(timeout=0.3)
    bob = await database_sync_to_async(Membership.objects.get)(user=named.bob)
    await database_sync_to_async(members.remove_member)(bob, acting_user=named.alice)
    for ws in sockets:
        closed = await ws.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4403}
