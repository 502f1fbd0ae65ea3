"""Who may be messaged: the installation's allow-list pattern (WHATSAPP_ALLOWED_PHONE_PATTERN, checked at startup
by a system check), the installation's blocked numbers and each tenant's own (BlockedNumber). Group JIDs are not
phone numbers and pass. Refused requests leave no row.

alice owns Acme, carol owns Globex.
"""
import pytest
from django.core import checks
from django_tenants.utils import tenant_context

from whatsapp.messaging import recipients
from whatsapp.models import BlockedNumber, Message, WhatsAppSession
from whatsapp.tests.support import error, ok

V1 = "/api/v1"
GROUP = "120363025246125486@g.us"


@pytest.fixture
def clients(named, api_as):
    for tenant in (named.acme, named.globex):
        with tenant_context(tenant):
            WhatsAppSession.objects.create(name="front-desk", phone="+14155550123", status="connected")
    return {"alice": api_as(named.alice), "carol": api_as(named.carol)}


def send(client, to):
    return client.post(f"{V1}/messages", {"session": "front-desk", "to": to, "text": "hi"}, format="json")


def count(tenant):
    with tenant_context(tenant):
        return Message.objects.count()


def test_numbers_outside_the_allowed_pattern_are_refused(named, clients, settings):
    settings.WHATSAPP_ALLOWED_PHONE_PATTERN = r"^\+1\d+$"
    err = error(send(clients["alice"], "+6281234567890"), 400, "recipient_not_allowed")
    assert "+6281234567890" in err["message"] and err["details"] == {"pattern": r"^\+1\d+$"}
    error(send(clients["alice"], "6281234567890@s.whatsapp.net"), 400, "recipient_not_allowed")
    assert count(named.acme) == 0
    assert ok(send(clients["alice"], "+1 415 555 0124"), 202)["to"] == "+14155550124"
    assert ok(send(clients["alice"], GROUP), 202)["chat"] == GROUP  # groups are not numbers
    assert count(named.acme) == 2


def test_the_whole_number_must_match(named, clients, settings):
    settings.WHATSAPP_ALLOWED_PHONE_PATTERN = r"\+1415"  # a prefix is not the whole number
    error(send(clients["alice"], "+14155550124"), 400, "recipient_not_allowed")
    settings.WHATSAPP_ALLOWED_PHONE_PATTERN = r"\+1415\d+"
    ok(send(clients["alice"], "+14155550124"), 202)


def test_an_empty_pattern_allows_any_number(named, clients, settings):
    settings.WHATSAPP_ALLOWED_PHONE_PATTERN = ""
    ok(send(clients["alice"], "+6281234567890"), 202)


def test_an_invalid_pattern_fails_the_system_check_and_sends_say_why(named, clients, settings):
    settings.WHATSAPP_ALLOWED_PHONE_PATTERN = r"^\+(1|44"
    [problem] = recipients.check_allowed_phone_pattern()
    assert problem.id == "whatsapp.E001" and problem.level == checks.ERROR
    assert "WHATSAPP_ALLOWED_PHONE_PATTERN" in problem.msg
    assert problem.id in [p.id for p in checks.run_checks()]  # registered with Django's checks
    err = error(send(clients["alice"], "+14155550124"), 503, "recipient_policy_invalid")
    assert "WHATSAPP_ALLOWED_PHONE_PATTERN" in err["message"]
    assert count(named.acme) == 0
    ok(send(clients["alice"], GROUP), 202)

    settings.WHATSAPP_ALLOWED_PHONE_PATTERN = r"^\+(1|44)\d+$"
    assert recipients.check_allowed_phone_pattern() == []


def test_a_number_the_tenant_blocked_is_refused_for_that_tenant_only(named, clients):
    with tenant_context(named.acme):
        BlockedNumber.objects.create(phone="+6281234567890", reason="asked us to stop")
    for to in ("+6281234567890", "62 812-3456-7890", "6281234567890@s.whatsapp.net"):
        err = error(send(clients["alice"], to), 400, "blocked_recipient")
        assert "Your business blocked this number" in err["message"] and err["details"] == {"blocked_by": "tenant"}
    assert count(named.acme) == 0
    ok(send(clients["carol"], "+6281234567890"), 202)  # Globex did not block it


def test_the_installations_blocked_numbers_say_so(named, clients, settings):
    settings.WHATSAPP_BLOCKED_NUMBERS = ["6281234567890"]
    err = error(send(clients["carol"], "+6281234567890"), 400, "blocked_recipient")
    assert err["message"] == "Messages to this number are blocked on this installation."
    assert count(named.globex) == 0


@pytest.mark.parametrize("to", ["+1415abc0123", "1415abc0123", "+1-800-FLOWERS", "1415abc0123@s.whatsapp.net"])
def test_a_recipient_with_letters_is_refused_not_dialled_on_a_keypad(named, clients, to):
    error(send(clients["alice"], to), 400, "invalid_recipient")
    assert count(named.acme) == 0
