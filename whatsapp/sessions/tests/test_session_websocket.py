"""Live session pages over a real websocket (config.asgi.application, the Redis channel layer): a client gets
its own tenant's QR code, its rotation and the connection as they happen — produced by an in-process session
host with the simulator on a manual clock — and nothing of another tenant's sessions; another tenant's session
name is closed with 4404 before anything is sent."""
import pytest
from channels.db import database_sync_to_async
from django_tenants.utils import schema_context

from whatsapp.host import leases
from whatsapp.models import WhatsAppSession
from whatsapp.providers.base import EventKind, ProviderEvent
from whatsapp.sessions import actions, events
from whatsapp.tests.socket_support import open_socket, refusal
from whatsapp.tests.support import drain, simulator_host

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("private_layer")]
ACME, GLOBEX = "t_test_acme", "t_test_globex"


def _sync(func):
    return database_sync_to_async(func)


@pytest.fixture
def host(clock, tmp_path):
    session_host = simulator_host(clock, tmp_path / "stores", "host-ws")
    yield session_host
    session_host.stop(release=True)


def create(tenant, user, name, *, running=False):
    with schema_context(tenant.schema_name):
        session = actions.create_session(tenant, acting_user=user, name=name, label=name.replace("-", " ").title())
        if running:
            WhatsAppSession.objects.filter(pk=session.pk).update(should_run=True)
    if running:
        leases.want_running(tenant.schema_name, session.pk)
    return session


async def next_update(ws, timeout=5):
    """The next session.update, skipping activity messages."""
    while True:
        message = await ws.receive_json_from(timeout=timeout)
        if message["type"] == "session.update":
            return message["data"]


async def update_where(ws, predicate, timeout=5):
    """Read until a session.update whose data satisfies `predicate`; returns it and the activity rows that
    arrived on the way (the log may come before the update that follows a burst of events)."""
    rows = []
    while True:
        message = await ws.receive_json_from(timeout=timeout)
        if message["type"] == "session.activity":
            rows.extend(message["data"]["items"])
        elif message["type"] == "session.update" and predicate(message["data"]):
            return message["data"], rows


async def next_activity(ws, timeout=5):
    while True:
        message = await ws.receive_json_from(timeout=timeout)
        if message["type"] == "session.activity":
            return message["data"]


async def test_own_session_page_gets_qr_rotation_and_connected_live(client, named, host, clock):
    session = await _sync(create)(named.acme, named.alice, "front-desk", running=True)
    page, connected, _ = await open_socket(client, named.alice, "/ws/sessions/front-desk/")
    assert connected
    listing, connected, _ = await open_socket(client, named.bob, "/ws/sessions/")
    assert connected

    # On connect: the current state, then the activity log (latest first).
    first = await page.receive_json_from(timeout=5)
    assert first["type"] == "session.update"
    assert first["data"]["id"] == session.pk and first["data"]["status"] == "new"
    log = await page.receive_json_from(timeout=5)
    assert log["type"] == "session.activity" and log["data"]["replace"]
    assert [item["kind"] for item in log["data"]["items"]] == ["created"]
    assert (await next_update(listing))["name"] == "front-desk"

    # The host starts it: a QR code.
    await _sync(host.sync)()
    clock.advance(1)
    await _sync(drain)(host)
    qr = await next_update(page)
    assert qr["status"] == "qr" and qr["qr_code"].startswith("2@") and qr["qr_expires_at"]
    assert qr["status_display"] == "Waiting for scan"
    activity = await next_activity(page)
    assert not activity["replace"] and "qr_issued" in [item["kind"] for item in activity["items"]]
    assert (await next_update(listing))["status"] == "qr"

    # WhatsApp rotates it: a new code, pushed without asking.
    clock.advance(60)
    await _sync(drain)(host)
    rotated = await next_update(page)
    assert rotated["status"] == "qr" and rotated["qr_code"] != qr["qr_code"]
    assert rotated["qr_expires_at"] != qr["qr_expires_at"]
    # Bob is an agent: he sees the state change, never the code (only roles that manage sessions link phones).
    listed = await next_update(listing)
    assert (listed["status"], listed["qr_code"], listed["qr_expires_at"]) == ("qr", "", None)

    # The phone scans it: connected, with the number and its name.
    host.provider(f"{ACME}:{session.pk}").simulate_scan("+6281234567890", push_name="Front Desk")
    clock.advance(1)
    await _sync(drain)(host)
    # PAIRED comes first (still showing the code), then CONNECTED.
    update, rows = await update_where(page, lambda data: data["status"] == "connected")
    assert update["phone"] == "+6281234567890" and update["push_name"] == "Front Desk"
    assert update["status_detail"] == "Connected as +6281234567890 (Front Desk)" and update["qr_code"] == ""
    if not rows:  # the log rows of the burst come after the first update that sees them
        rows = (await next_activity(page))["items"]
    assert [(row["kind"], row["message"]) for row in rows] == [
        ("connected", "Connected as +6281234567890 (Front Desk)")]
    await update_where(listing, lambda data: data["status"] == "connected")
    await page.disconnect()
    await listing.disconnect()


async def test_qr_and_pairing_codes_reach_only_those_who_manage_sessions(client, named, host, clock):
    from accounts.models import Membership
    from conftest import make_user

    vera = await _sync(make_user)("vera@acme.test")
    await _sync(Membership.objects.create)(user=vera, tenant=named.acme, role=Membership.Role.VIEWER)
    session = await _sync(create)(named.acme, named.alice, "front-desk", running=True)
    sockets = {}
    for who, user in (("alice", named.alice), ("bob", named.bob), ("vera", vera)):
        for path in ("/ws/sessions/front-desk/", "/ws/sessions/"):
            ws, connected, _ = await open_socket(client, user, path)
            assert connected, (who, path)
            sockets[who, path] = ws
            assert (await next_update(ws))["status"] == "new"
    await _sync(host.sync)()
    clock.advance(1)
    await _sync(drain)(host)
    for (who, path), ws in sockets.items():
        update, _ = await update_where(ws, lambda data: data["status"] == "qr")
        if who == "alice":
            assert update["qr_code"].startswith("2@") and update["qr_expires_at"], path
        else:
            assert (update["qr_code"], update["qr_expires_at"], update["pair_code"]) == ("", None, ""), (who, path)
    # A pairing code, announced through the channel layer as the host does.

    def pairing():
        with schema_context(ACME):
            WhatsAppSession.objects.filter(pk=session.pk).update(status=WhatsAppSession.Status.PAIRING,
                                                                 pair_code="ABCD-1234", qr_code="")
        events.announce(ACME, session.pk)

    await _sync(pairing)()
    for (who, path), ws in sockets.items():
        update, _ = await update_where(ws, lambda data: data["status"] == "pairing")
        assert update["pair_code"] == ("ABCD-1234" if who == "alice" else ""), (who, path)
    for ws in sockets.values():
        await ws.disconnect()


async def test_nothing_arrives_from_another_tenants_sessions(client, named):
    acme_session = await _sync(create)(named.acme, named.alice, "front-desk")
    globex_session = await _sync(create)(named.globex, named.carol, "front-desk")  # same name, same id
    assert acme_session.pk == globex_session.pk
    page, _, _ = await open_socket(client, named.alice, "/ws/sessions/front-desk/")
    listing, _, _ = await open_socket(client, named.alice, "/ws/sessions/")
    await next_activity(page)
    assert (await next_update(listing))["id"] == acme_session.pk
    carols, connected, _ = await open_socket(client, named.carol, "/ws/sessions/front-desk/")
    assert connected
    await next_activity(carols)

    qr = ProviderEvent(f"{GLOBEX}:{globex_session.pk}", EventKind.QR, {"code": "2@globex-secret", "expires_in": 60})
    await _sync(events.apply)(qr)
    assert (await next_update(carols))["qr_code"] == "2@globex-secret"  # it was published, to Globex
    assert await page.receive_nothing(timeout=0.5)
    assert await listing.receive_nothing(timeout=0.1)

    connected_event = ProviderEvent(f"{GLOBEX}:{globex_session.pk}", EventKind.CONNECTED,
                                    {"phone": "+14155550199", "push_name": "Globex"})
    await _sync(events.apply)(connected_event)
    assert (await next_update(carols))["status"] == "connected"
    assert await page.receive_nothing(timeout=0.5)
    assert await listing.receive_nothing(timeout=0.1)
    for ws in (page, listing, carols):
        await ws.disconnect()


async def test_another_tenants_session_name_is_closed_with_4404(client, named):
    await _sync(create)(named.globex, named.carol, "globex-desk")
    assert await refusal(client, named.alice, "/ws/sessions/globex-desk/") == 4404
    assert await refusal(client, named.alice, "/ws/sessions/no-such-session/") == 4404


async def test_anonymous_visitors_are_closed_with_4404(named):
    await _sync(create)(named.acme, named.alice, "front-desk")
    for path in ("/ws/sessions/", "/ws/sessions/front-desk/"):
        assert await refusal(None, None, path) == 4404


async def test_heartbeat_and_changes_made_on_the_pages(client, named):
    await _sync(create)(named.acme, named.alice, "front-desk")
    page, _, _ = await open_socket(client, named.alice, "/ws/sessions/front-desk/")
    await next_activity(page)
    await page.send_json_to({"type": "ping"})
    assert await page.receive_json_from(timeout=5) == {"type": "pong"}

    from django.test import Client

    other = Client()  # alice in another browser
    await _sync(other.force_login)(named.alice)
    response = await _sync(other.post)("/sessions/front-desk/", {"action": "start"})
    assert response.status_code == 302
    assert (await next_update(page))["status"] == "starting"  # a start elsewhere reaches the open page

    owner = Client()
    await _sync(owner.force_login)(named.alice)
    response = await _sync(owner.post)("/sessions/", {"action": "delete", "session": "front-desk"})
    assert response.status_code == 302
    message = await page.receive_json_from(timeout=5)
    while message["type"] != "session.deleted":
        message = await page.receive_json_from(timeout=5)
    assert message["data"]["name"] == "front-desk"
    await page.disconnect()


async def test_pairing_code_and_logout_from_the_phone_arrive_live(client, named, host, clock):
    session = await _sync(create)(named.acme, named.alice, "front-desk", running=True)
    page, _, _ = await open_socket(client, named.alice, "/ws/sessions/front-desk/")
    await next_activity(page)
    await _sync(host.sync)()
    clock.advance(1)
    await _sync(drain)(host)
    await update_where(page, lambda data: data["status"] == "qr")

    key = f"{ACME}:{session.pk}"
    await _sync(host.command)(key, "pairing_code", phone="+14155550123")
    await _sync(drain)(host)
    update, _ = await update_where(page, lambda data: data["status"] == "pairing")
    assert len(update["pair_code"]) == 9 and update["pair_code"][4] == "-"
    assert "Link with phone number" in update["status_detail"]

    host.provider(key).simulate_scan("+14155550123", push_name="Front Desk")
    clock.advance(1)
    await _sync(drain)(host)
    await update_where(page, lambda data: data["status"] == "connected")
    await _sync(host.command)(key, "simulate_logout")
    await _sync(drain)(host)
    update, _ = await update_where(page, lambda data: data["status"] == "logged_out")
    assert update["status_display"] == "Logged out" and "scan again to relink" in update["status_detail"]
    await page.disconnect()


async def test_a_suspended_tenants_sockets_are_closed_with_4403(client, named):
    from tenants.models import Tenant

    await _sync(create)(named.acme, named.alice, "front-desk")
    await _sync(lambda: Tenant.objects.filter(pk=named.acme.pk).update(status=Tenant.Status.SUSPENDED))()
    for path in ("/ws/sessions/", "/ws/sessions/front-desk/", "/ws/conversations/"):
        assert await refusal(client, named.alice, path) == 4403, path
    assert await refusal(client, named.alice, "/ws/sessions/no-such-session/") == 4404  # unknown stays unknown
