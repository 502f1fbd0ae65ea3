"""Escalation: when a contact asks for a person, the receptionist's escalation contacts are told by email (members
chosen and other addresses: the email outbox) and Telegram (the platform's bot: a local fake Bot API at
TELEGRAM_API_BASE), besides the webhook event; what was told or failed is in the automation log. Configured per
workspace over the API and the page; bad addresses and chat ids are 400, another workspace's member 404.

alice owns Acme, bob is a member of Acme, carol owns Globex.
"""
import json

import pytest
from django_tenants.utils import tenant_context

from accounts.models import Membership
from alerts.tests.test_alerts import Recorder
from whatsapp.automation.models import AutomationLog, Receptionist
from whatsapp.tests.support import drain, error, link_session, ok

V1 = "/api/v1"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def telegram(settings):
    server = Recorder()
    settings.TELEGRAM_API_BASE, settings.TELEGRAM_BOT_TOKEN = server.url, "123:abc"
    yield server
    server.close()


def ask_for_a_person(client, host, text="Can I talk to a human please?", sender="+6281234567890"):
    ok(client.post(f"{V1}/test-helpers/sessions/front-desk/inbound", {"from": sender, "text": text},
                   format="json"), 202)
    drain(host)


def escalations(mailoutbox):
    return [mail for mail in mailoutbox if "asks for a person" in mail.subject]


def handoff_log(tenant):
    with tenant_context(tenant):
        return AutomationLog.objects.get(kind="handoff")


def test_a_contact_asking_for_a_person_is_told_by_email_and_telegram(named, clients, host, clock, telegram,
                                                                     mailoutbox):
    alice = clients["alice"]
    link_session(alice, host, clock)
    with tenant_context(named.acme):
        bob = Membership.objects.get(user=named.bob, tenant=named.acme)
    got = ok(alice.patch(f"{V1}/automation", {
        "enabled": True, "handoff_keywords": ["human"], "handoff_reply": "A person will answer you shortly.",
        "escalation_member_ids": [bob.pk], "escalation_emails": ["Desk@Acme.test", "desk@acme.test"],
        "escalation_telegram_chat_ids": ["-100123", "@acmedesk"]}, format="json"))
    assert got["escalation_member_ids"] == [bob.pk] and got["escalation_emails"] == ["desk@acme.test"]
    assert got["escalation_telegram_chat_ids"] == ["-100123", "@acmedesk"]

    ask_for_a_person(alice, host)
    [mail] = escalations(mailoutbox)
    assert sorted(mail.to) == sorted(["desk@acme.test", named.bob.email])
    assert "asks for a person on" in mail.subject and "Can I talk to a human please?" in mail.body
    posts = [(path, json.loads(body)) for path, _, body in telegram.received]
    assert [path for path, _ in posts] == ["/bot123:abc/sendMessage"] * 2
    assert [body["chat_id"] for _, body in posts] == ["-100123", "@acmedesk"]
    assert all("Can I talk to a human please?" in body["text"] and "/conversations/" in body["text"]
               for _, body in posts)
    assert handoff_log(named.acme).detail.endswith("told: 2 by email, 2 on Telegram")

    # A message that asks for nobody tells nobody.
    ask_for_a_person(alice, host, "What are your prices?", sender="+6281234567891")
    assert len(escalations(mailoutbox)) == 1 and len(telegram.received) == 2


def test_without_a_telegram_bot_email_still_goes_and_the_log_says_why_not(named, clients, host, clock, settings,
                                                                           mailoutbox):
    settings.TELEGRAM_BOT_TOKEN = ""
    alice = clients["alice"]
    link_session(alice, host, clock)
    ok(alice.patch(f"{V1}/automation", {"enabled": True, "handoff_keywords": ["human"],
                                        "escalation_emails": ["desk@acme.test"],
                                        "escalation_telegram_chat_ids": ["42"]}, format="json"))
    ask_for_a_person(alice, host)
    assert [mail.to for mail in escalations(mailoutbox)] == [["desk@acme.test"]]
    assert "failed: telegram: the platform has no Telegram bot" in handoff_log(named.acme).detail


def test_bad_escalation_contacts_are_refused_and_write_nothing(named, clients, host, clock):
    alice = clients["alice"]
    link_session(alice, host, clock)
    with tenant_context(named.globex):
        carol = Membership.objects.get(user=named.carol, tenant=named.globex)
    error(alice.patch(f"{V1}/automation", {"escalation_emails": ["not-an-address"]}, format="json"), 400,
          "validation_error")
    error(alice.patch(f"{V1}/automation", {"escalation_telegram_chat_ids": ["chat 42"]}, format="json"), 400,
          "invalid_escalation")
    error(alice.patch(f"{V1}/automation", {"escalation_emails": [f"p{n}@acme.test" for n in range(21)]},
                      format="json"), 400, "validation_error")
    error(alice.patch(f"{V1}/automation", {"escalation_member_ids": [carol.pk]}, format="json"), 404, "not_found")
    error(clients["bob"].patch(f"{V1}/automation", {"escalation_emails": ["a@acme.test"]}, format="json"), 403,
          "permission_denied")
    with tenant_context(named.acme):
        assert not Receptionist.objects.exists()


def test_the_page_sets_who_is_told(named, clients, host, clock, client):
    link_session(clients["alice"], host, clock)
    client.force_login(named.alice)
    with tenant_context(named.acme):
        bob = Membership.objects.get(user=named.bob, tenant=named.acme)
    page = client.get("/automation/")
    assert page.status_code == 200 and b"Who is told when a contact asks for a person" in page.content
    form = {"action": "settings", "s-cooldown_minutes": "60", "s-handoff_minutes": "60",
            "s-escalation_member_ids": [str(bob.pk)], "s-escalation_emails": "desk@acme.test, boss@acme.test",
            "s-escalation_telegram_chat_ids": "-100123"}
    saved = client.post("/automation/", form)
    assert saved.status_code == 302
    with tenant_context(named.acme):
        row = Receptionist.objects.get(scope="workspace")
        assert (row.escalation_member_ids, row.escalation_emails, row.escalation_telegram_chat_ids) == (
            [bob.pk], ["desk@acme.test", "boss@acme.test"], ["-100123"])
    refused = client.post("/automation/", {**form, "s-escalation_telegram_chat_ids": "chat 42"}, follow=True)
    assert "is not a Telegram chat id" in refused.content.decode()
    with tenant_context(named.acme):
        assert Receptionist.objects.get(scope="workspace").escalation_telegram_chat_ids == ["-100123"]
