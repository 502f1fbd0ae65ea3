"""The session pages through Django's test client: the list (create with clear errors and the plan limit,
start, restart, unlink the phone, delete), one session's page (QR SVG, pairing code, simulated scan), who may do what,
and another tenant's sessions being a 404.

Roles: owners and admins create, unlink phones and delete; members see the sessions and start, restart and link them.
"""
from datetime import timedelta

from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import Membership
from billing.models import Subscription
from whatsapp.host.models import SessionLease
from whatsapp.models import SessionActivity, WhatsAppSession
from whatsapp.sessions import actions
from whatsapp.tests.support import texts

ACME, GLOBEX = "t_test_acme", "t_test_globex"
JSON = {"HTTP_ACCEPT": "application/json"}


def make_session(tenant, user, name, **fields):
    with schema_context(tenant.schema_name):
        session = actions.create_session(tenant, acting_user=user, name=name, label=fields.pop("label", ""))
        if fields:
            WhatsAppSession.objects.filter(pk=session.pk).update(**fields)
            session.refresh_from_db()
        return session


def get_session(schema, name):
    with schema_context(schema):
        return WhatsAppSession.objects.filter(name=name).first()


def held_by_a_host(schema, session):
    """As if a `whatsapp` host ran the session (commands then go to that host's queue)."""
    SessionLease.objects.create(schema_name=schema, session_id=session.pk, host_id="host-test",
                                lease_expires_at=timezone.now() + timedelta(minutes=1))


# --- the list ---------------------------------------------------------------------------------------------

def test_login_is_required(client, named):
    response = client.get("/sessions/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_owner_creates_a_session_from_its_label(as_user, named):
    client = as_user(named.alice)
    page = client.get("/sessions/")
    assert page.status_code == 200
    assert b"Add a session" in page.content and b"No sessions yet" in page.content
    assert b'data-ws="/ws/sessions/?tenant_id=' in page.content
    response = client.post("/sessions/", {"action": "create", "label": "Front desk", "name": ""}, follow=True)
    assert response.redirect_chain[-1][0] == "/sessions/front-desk/"
    assert "Front desk is ready. Press Start" in texts(response)[0]
    session = get_session(ACME, "front-desk")
    assert session.label == "Front desk" and session.status == "new"
    listing = client.get("/sessions/").content.decode()
    assert 'data-testid="session-row-front-desk"' in listing and "Not linked" in listing
    assert "1 of 5 WhatsApp sessions on your Basic plan" in listing


def test_create_errors_are_shown_on_the_form(as_user, named):
    client = as_user(named.alice)
    response = client.post("/sessions/", {"action": "create", "label": "", "name": ""})
    assert response.status_code == 400
    assert "Give the session a label or a name." in response.content.decode()
    response = client.post("/sessions/", {"action": "create", "label": "Front", "name": "front desk"})
    assert response.status_code == 400
    assert "Use 1–64 letters, digits" in response.content.decode()
    make_session(named.acme, named.alice, "front-desk")
    response = client.post("/sessions/", {"action": "create", "label": "Again", "name": "front-desk"})
    assert response.status_code == 409
    assert "A session named &#x27;front-desk&#x27; already exists." in response.content.decode()
    with schema_context(ACME):
        assert WhatsAppSession.objects.count() == 1


def test_the_plan_limit_says_so_with_a_link_to_billing(as_user, named):
    for i in range(5):  # Basic allows 5
        make_session(named.acme, named.alice, f"s{i}")
    client = as_user(named.alice)
    page = client.get("/sessions/").content.decode()
    assert 'data-testid="limit-note"' in page and "You use all 5 sessions of your Basic plan." in page
    response = client.post("/sessions/", {"action": "create", "label": "Sixth"})
    assert response.status_code == 402
    body = response.content.decode()
    assert "Your Basic plan allows 5 WhatsApp sessions and you have 5. Upgrade on the Billing page" in body
    assert '<a href="/billing/" data-testid="billing-link">Go to Billing</a>' in body
    with schema_context(ACME):
        assert WhatsAppSession.objects.count() == 5


def test_start_restart_logout_and_delete_from_the_list(as_user, named):
    session = make_session(named.acme, named.alice, "front-desk", label="Front desk")
    client = as_user(named.alice)
    response = client.post("/sessions/", {"action": "start", "session": "front-desk"}, follow=True)
    assert response.redirect_chain[-1][0] == "/sessions/"
    assert texts(response) == ["Front desk is starting; its QR code appears in a few seconds."]
    assert get_session(ACME, "front-desk").should_run
    assert 'data-status="starting"' in response.content.decode()

    held_by_a_host(ACME, session)
    response = client.post("/sessions/", {"action": "restart", "session": "front-desk"}, follow=True)
    assert texts(response) == ["Front desk is restarting."]
    with schema_context(ACME):
        assert SessionActivity.objects.filter(session_id=session.pk, kind="restarted").exists()

    SessionLease.objects.all().delete()  # no host runs it: logging out is done here
    response = client.post("/sessions/", {"action": "logout", "session": "front-desk"}, follow=True)
    assert texts(response) == ["The phone is unlinked from Front desk. Start it and scan again to link a phone."]
    assert get_session(ACME, "front-desk").status == "logged_out"

    response = client.post("/sessions/", {"action": "delete", "session": "front-desk"}, follow=True)
    assert response.redirect_chain[-1][0] == "/sessions/"
    assert texts(response) == ["Front desk deleted."]
    assert get_session(ACME, "front-desk") is None


def test_start_means_a_qr_code_even_after_linking_by_phone_number(as_user, named):
    make_session(named.acme, named.alice, "front-desk", status="stopped", pairing_phone="+14155550123")
    as_user(named.alice).post("/sessions/front-desk/", {"action": "start"})
    session = get_session(ACME, "front-desk")
    assert session.should_run and session.pairing_phone == ""


def test_actions_answer_json_for_the_live_page(as_user, named):
    make_session(named.acme, named.alice, "front-desk", label="Front desk")
    client = as_user(named.alice)
    response = client.post("/sessions/front-desk/", {"action": "start"}, **JSON)
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] and body["session"]["status"] == "starting" and body["session"]["name"] == "front-desk"
    response = client.post("/sessions/front-desk/", {"action": "start"}, **JSON)
    assert response.status_code == 409
    assert response.json() == {"ok": False, "message": "This session is already running.", "code": "already_running"}
    response = client.post("/sessions/front-desk/", {"action": "fly"}, **JSON)
    assert response.status_code == 400 and response.json()["code"] == "unknown_action"
    response = client.post("/sessions/front-desk/", {"action": "delete"}, **JSON)
    assert response.json() == {"ok": True, "message": "Front desk deleted.", "redirect": "/sessions/"}


# --- roles --------------------------------------------------------------------------------------------------

def test_agents_view_but_do_not_create_start_log_out_or_delete(as_user, named):
    make_session(named.acme, named.alice, "front-desk", label="Front desk")
    client = as_user(named.bob)
    page = client.get("/sessions/").content.decode()
    assert "Front desk" in page and "Add a session" not in page and 'data-testid="member-note"' in page
    assert 'value="delete"' not in page and 'value="logout"' not in page and 'value="start"' not in page
    assert client.post("/sessions/", {"action": "create", "label": "Mine"}).status_code == 403
    assert client.post("/sessions/", {"action": "delete", "session": "front-desk"}).status_code == 403
    assert client.post("/sessions/front-desk/", {"action": "logout"}).status_code == 403
    assert client.post("/sessions/front-desk/", {"action": "logout"}, **JSON).status_code == 403
    assert get_session(ACME, "front-desk") is not None
    assert client.post("/sessions/front-desk/", {"action": "start"}).status_code == 403
    assert not get_session(ACME, "front-desk").should_run


def test_admins_manage_sessions(as_user, named):
    from conftest import make_user

    dave = make_user("dave@acme.test", full_name="Dave Admin")
    Membership.objects.create(user=dave, tenant=named.acme, role=Membership.Role.ADMIN)
    client = as_user(dave)
    assert client.post("/sessions/", {"action": "create", "label": "Sales"}).status_code == 302
    assert client.post("/sessions/", {"action": "delete", "session": "sales"}).status_code == 302
    assert get_session(ACME, "sales") is None


# --- isolation ------------------------------------------------------------------------------------------------

def test_another_tenants_session_is_a_404(as_user, named):
    make_session(named.globex, named.carol, "globex-desk", qr_code="2@secret", status="qr",
                 qr_expires_at=timezone.now() + timedelta(seconds=20))
    make_session(named.acme, named.alice, "front-desk", label="Acme desk")
    make_session(named.globex, named.carol, "front-desk", label="Globex desk")  # the same name, elsewhere
    client = as_user(named.alice)
    assert client.get("/sessions/globex-desk/").status_code == 404
    assert client.get("/sessions/globex-desk/qr.svg").status_code == 404
    assert client.post("/sessions/globex-desk/", {"action": "delete"}).status_code == 404
    assert client.post("/sessions/", {"action": "delete", "session": "globex-desk"}).status_code == 404
    assert client.get("/sessions/bad name/").status_code == 404
    page = client.get("/sessions/").content.decode()
    assert "Acme desk" in page and "Globex desk" not in page and "globex-desk" not in page
    assert "Acme desk" in client.get("/sessions/front-desk/").content.decode()
    assert get_session(GLOBEX, "globex-desk") is not None


# --- the session page -------------------------------------------------------------------------------------------

def test_session_page_shows_status_explanation_qr_and_activity(as_user, named):
    make_session(named.acme, named.alice, "front-desk", label="Front desk", status="qr", qr_code="2@abc,def",
                 qr_expires_at=timezone.now() + timedelta(seconds=20),
                 status_detail="Scan the QR code with WhatsApp on your phone: Settings → Linked devices.")
    client = as_user(named.bob)
    page = client.get("/sessions/front-desk/").content.decode()
    assert "Waiting for scan" in page and "Scan the QR code with WhatsApp" in page
    # What to do, for this status, and truthfully how long a code lasts (WhatsApp's: 60 s, then 20 s each).
    assert "the first code lasts 60 seconds, each next one 20" in page and "every few seconds" not in page
    assert 'data-ws="/ws/sessions/front-desk/?tenant_id=' in page
    assert "Created by alice@acme.test" in page  # the activity log
    assert 'data-testid="link-phone"' not in page and 'data-testid="start"' not in page  # an agent links nothing
    # Nor does an agent see the code: the QR and pairing codes are for those who manage sessions.
    assert "qr.svg" not in page and "2@abc" not in page and 'data-testid="linking-for-managers"' in page
    assert client.get("/sessions/front-desk/qr.svg").status_code == 403
    owners = as_user(named.alice).get("/sessions/front-desk/").content.decode()
    assert 'data-testid="link-phone"' in owners and 'src="/sessions/front-desk/qr.svg?v=' in owners
    client = as_user(named.alice)
    svg = client.get("/sessions/front-desk/qr.svg")
    assert svg.status_code == 200 and svg["Content-Type"] == "image/svg+xml"
    assert svg.content.startswith(b"<svg") and "no-store" in svg["Cache-Control"]


def test_no_qr_svg_when_no_code_is_waiting(as_user, named):
    make_session(named.acme, named.alice, "front-desk")
    assert as_user(named.alice).get("/sessions/front-desk/qr.svg").status_code == 404


def test_link_with_phone_number(as_user, named):
    make_session(named.acme, named.alice, "front-desk")
    client = as_user(named.alice)
    response = client.post("/sessions/front-desk/", {"action": "link_phone", "link-phone": "12"}, **JSON)
    assert response.status_code == 400 and response.json()["code"] == "invalid_phone"
    assert "international format" in response.json()["message"]
    response = client.post("/sessions/front-desk/", {"action": "link_phone", "link-phone": "+1 415 555 0123"}, **JSON)
    assert response.status_code == 200, response.content
    assert response.json()["message"] == ("Asking WhatsApp for a pairing code for +14155550123; it appears here in a "
                                          "moment.")
    session = get_session(ACME, "front-desk")
    assert session.pairing_phone == "+14155550123" and session.should_run


def test_simulator_banner_and_simulated_scan(as_user, named, settings):
    settings.WHATSAPP_PROVIDER = "simulator"
    session = make_session(named.acme, named.alice, "front-desk", status="qr")
    client = as_user(named.alice)
    assert "Simulated WhatsApp." in client.get("/sessions/").content.decode()
    page = client.get("/sessions/front-desk/").content.decode()
    assert "Simulated WhatsApp." in page and "Simulate scan" in page
    scan = {"action": "simulate_scan", "scan-phone": "+14155550123", "scan-push_name": "Front Desk"}
    response = client.post("/sessions/front-desk/", scan, **JSON)
    assert response.status_code == 409
    assert response.json()["message"] == "This session is not running on any host; start it first."
    response = client.post("/sessions/front-desk/", scan, follow=True)  # without JavaScript: a message
    assert texts(response) == ["This session is not running on any host; start it first."]
    held_by_a_host(ACME, session)
    response = client.post("/sessions/front-desk/", scan, **JSON)
    assert response.status_code == 200 and response.json()["message"] == "Simulated phone +14155550123 is scanning…"
    response = client.post("/sessions/front-desk/", {**scan, "scan-phone": "nope"}, **JSON)
    assert response.status_code == 400 and "international format" in response.json()["message"]


def test_no_simulator_no_banner_and_no_simulated_scan(as_user, named, settings):
    settings.WHATSAPP_PROVIDER = "neonize"
    make_session(named.acme, named.alice, "front-desk", status="qr")
    client = as_user(named.alice)
    page = client.get("/sessions/front-desk/").content.decode()
    assert "Simulated WhatsApp" not in page and "Simulate scan" not in page
    response = client.post("/sessions/front-desk/", {"action": "simulate_scan", "scan-phone": "+14155550123"})
    assert response.status_code == 404


def test_a_read_only_tenant_sees_sessions_but_changes_are_refused(as_user, named):
    make_session(named.acme, named.alice, "front-desk", label="Front desk")
    Subscription.objects.filter(tenant=named.acme).update(status="read_only", read_only_since=timezone.now())
    client = as_user(named.alice)
    assert client.get("/sessions/front-desk/").status_code == 200
    response = client.post("/sessions/front-desk/", {"action": "start"}, follow=True)
    assert response.redirect_chain[-1][0] == "/sessions/front-desk/"
    assert any("read-only" in text for text in texts(response))
    assert not get_session(ACME, "front-desk").should_run


def test_unlinking_the_phone_is_never_called_log_out(as_user, named):
    """The account's "Log out" sits in the header; the session's action unlinks the phone and says so."""
    make_session(named.acme, named.alice, "front-desk", label="Front desk", status="connected", phone="+14155550123",
                 jid_user="14155550123", jid_device=3, should_run=True)
    client = as_user(named.alice)
    for url in ("/sessions/", "/sessions/front-desk/"):
        page = client.get(url).content.decode()
        assert page.count("Log out") == 1 and page.count("log out") == 0, url  # the account's, in the header
        assert "Unlink phone</button>" in page and "Unlink the phone from Front desk?" in page, url
    SessionLease.objects.all().delete()
    response = client.post("/sessions/front-desk/", {"action": "logout"}, follow=True)
    assert texts(response) == ["The phone is unlinked from Front desk. Start it and scan again to link a phone."]
    with schema_context("t_test_acme"):
        row = SessionActivity.objects.filter(kind="logged_out").get()
    assert row.message == "Phone unlinked by alice@acme.test"
