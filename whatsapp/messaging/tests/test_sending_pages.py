"""The sending settings page (/sending/: pacing form, blocked numbers with add and remove forms) and the queue on
the session page (its card and the JSON it polls), through Django's test client.

alice owns Acme and changes the settings; bob, a member, sees them read-only; carol owns Globex, whose ids are
404 here.
"""
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.models import Subscription
from whatsapp.models import BlockedNumber, Message, PacingPolicy, WhatsAppSession
from whatsapp.tests.support import texts

PAGE = "/sending/"


def blocked(tenant):
    with tenant_context(tenant):
        return list(BlockedNumber.objects.values_list("phone", flat=True))


def test_owner_sees_the_forms_and_the_installation_defaults(as_user, named, settings):
    settings.WHATSAPP_PACING_DAILY_CAP = 1000
    page = as_user(named.alice).get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="pacing-form"' in html and 'data-testid="block-form"' in html
    assert "csrfmiddlewaretoken" in html
    assert "Empty = the installation's default (1000)." in html
    assert 'data-testid="blocked-empty"' in html


def test_owner_saves_pacing(as_user, named):
    client = as_user(named.alice)
    response = client.post(PAGE, {"action": "pacing", "pacing-enabled": "on", "pacing-min_interval_ms": "5000",
                                  "pacing-daily_cap": "", "pacing-jitter_ms": "0"}, follow=True)
    assert response.redirect_chain == [(PAGE, 302)]
    assert texts(response) == ["Pacing saved. It applies to the next message of every number."]
    with tenant_context(named.acme):
        policy = PacingPolicy.objects.get()
    assert (policy.enabled, policy.min_interval_ms, policy.jitter_ms, policy.daily_cap) == (True, 5000, 0, None)
    assert 'value="5000"' in response.content.decode()

    client.post(PAGE, {"action": "pacing", "pacing-min_interval_ms": "5000"})  # the box unticked: off
    with tenant_context(named.acme):
        assert PacingPolicy.objects.get().enabled is False


def test_bad_pacing_values_are_shown_on_the_form(as_user, named):
    response = as_user(named.alice).post(PAGE, {"action": "pacing", "pacing-enabled": "on",
                                                "pacing-daily_cap": "0", "pacing-min_interval_ms": "-5"})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-testid="error-daily_cap"' in html and 'data-testid="error-min_interval_ms"' in html
    with tenant_context(named.acme):
        assert not PacingPolicy.objects.exists()


def test_a_gap_under_a_second_is_refused_with_the_reason(as_user, named):
    response = as_user(named.alice).post(PAGE, {"action": "pacing", "pacing-enabled": "on",
                                                "pacing-min_interval_ms": "100"})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-testid="error-min_interval_ms"' in html
    assert "at least 1000 ms (one second)" in html and "WhatsApp bans numbers that send like machines" in html
    assert "At least 1000 ms (one second)." in html  # said beside the field before anyone tries
    with tenant_context(named.acme):
        assert not PacingPolicy.objects.exists()


def test_the_pacing_floor_holds_in_the_action_whatever_calls_it(named):
    from core.errors import DomainError
    from whatsapp.messaging import policy

    with tenant_context(named.acme):
        with pytest.raises(DomainError) as refused:
            policy.update_pacing_policy(named.acme, acting_user=named.alice, changes={"min_interval_ms": 100})
        assert refused.value.code == "invalid_pacing" and "one second" in refused.value.message
        policy.update_pacing_policy(named.acme, acting_user=named.alice, changes={"min_interval_ms": 1000})
        assert PacingPolicy.objects.get().min_interval_ms == 1000


def test_owner_blocks_and_unblocks_numbers(as_user, named):
    client = as_user(named.alice)
    response = client.post(PAGE, {"action": "block", "block-phone": "+1 415 555 0124", "block-reason": "opted out"},
                           follow=True)
    assert texts(response) == ["+14155550124 is blocked: messages to it are refused."]
    assert blocked(named.acme) == ["+14155550124"]
    html = response.content.decode()
    assert "+14155550124" in html and "opted out" in html

    again = client.post(PAGE, {"action": "block", "block-phone": "+14155550124"})
    assert again.status_code == 409 and "+14155550124 is already blocked." in again.content.decode()
    bad = client.post(PAGE, {"action": "block", "block-phone": "call me"})
    assert bad.status_code == 400 and 'data-testid="error-phone"' in bad.content.decode()
    assert blocked(named.acme) == ["+14155550124"]

    with tenant_context(named.acme):
        row = BlockedNumber.objects.get()
    response = client.post(PAGE, {"action": "unblock", "id": row.pk}, follow=True)
    assert texts(response) == ["+14155550124 is no longer blocked."]
    assert blocked(named.acme) == []


def test_another_tenants_blocked_number_is_a_404(as_user, named):
    with tenant_context(named.globex):
        carols = BlockedNumber.objects.create(phone="+14155550124")
    response = as_user(named.alice).post(PAGE, {"action": "unblock", "id": carols.pk})
    assert response.status_code == 404
    assert blocked(named.globex) == ["+14155550124"]
    assert "+14155550124" not in as_user(named.alice).get(PAGE).content.decode()


def test_members_see_the_settings_read_only(as_user, named):
    with tenant_context(named.acme):
        row = BlockedNumber.objects.create(phone="+14155550124")
    client = as_user(named.bob)
    html = client.get(PAGE).content.decode()
    assert "+14155550124" in html and "Owners and admins change these" in html
    assert 'data-testid="pacing-form"' not in html and 'data-testid="block-form"' not in html
    assert f'data-testid="unblock-{row.pk}"' not in html
    assert client.post(PAGE, {"action": "unblock", "id": row.pk}).status_code == 403
    assert client.post(PAGE, {"action": "block", "block-phone": "+14155550125"}).status_code == 403
    assert client.post(PAGE, {"action": "pacing", "pacing-daily_cap": "5"}).status_code == 403
    assert blocked(named.acme) == ["+14155550124"]


def test_forms_need_the_csrf_token(named):
    client = Client(enforce_csrf_checks=True)
    client.force_login(named.alice)
    assert client.post(PAGE, {"action": "block", "block-phone": "+14155550124"}).status_code == 403
    assert blocked(named.acme) == []


def test_a_read_only_tenant_sees_the_page_but_changes_are_refused(as_user, named):
    Subscription.objects.filter(tenant=named.acme).update(status="read_only", read_only_since=timezone.now())
    client = as_user(named.alice)
    assert client.get(PAGE).status_code == 200
    response = client.post(PAGE, {"action": "block", "block-phone": "+14155550124"}, follow=True)
    assert "read-only" in texts(response)[0]
    assert blocked(named.acme) == []


def test_login_is_required(client, named):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- the queue on the session page ------------------------------------------------------------------------------


def test_the_session_page_shows_its_queue(as_user, named, settings):
    settings.WHATSAPP_PACING_ENABLED = True
    settings.WHATSAPP_PACING_DAILY_CAP = 500
    settings.WHATSAPP_PACING_WARMUP_DAYS = 7
    settings.WHATSAPP_PACING_WARMUP_DAILY_CAP = 100
    now = timezone.now()
    slot = now + timedelta(seconds=40)
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.create(name="front-desk", status="connected", linked_at=now,
                                                 next_send_at=slot)
        Message.objects.create(session=session, direction="out", chat_jid="1@s.whatsapp.net", status="sent",
                               sent_at=now)
        for _ in range(2):
            Message.objects.create(session=session, direction="out", chat_jid="1@s.whatsapp.net", status="queued",
                                   next_attempt_at=slot, paced_until=slot)
    client = as_user(named.bob)
    html = client.get("/sessions/front-desk/").content.decode()
    assert 'data-queue-url="/sending/sessions/front-desk/queue"' in html
    assert 'data-testid="queue-queued">2<' in html
    assert 'data-testid="queue-sent-today">1 of 100<' in html  # the warm-up cap of a new number
    assert f'datetime="{slot.isoformat()}"' in html
    assert "warming up, at most 100 messages a day" in html
    assert "js/session_queue.js" in html
    # The rest is intact; bob is an agent, who is never shown the QR code (only roles that manage sessions are).
    assert 'data-testid="activity-card"' in html and 'data-testid="qr-box"' not in html

    data = client.get("/sending/sessions/front-desk/queue").json()
    assert (data["queued"], data["waiting"], data["sent_today"], data["daily_cap"]) == (2, 2, 1, 100)
    assert data["next_queued_send_at"] == slot.isoformat() and data["warmup"]["active"] is True


def test_another_tenants_session_queue_is_a_404(as_user, named):
    with tenant_context(named.globex):
        WhatsAppSession.objects.create(name="globex-desk", status="connected")
    assert as_user(named.alice).get("/sending/sessions/globex-desk/queue").status_code == 404
