"""How many SQL statements accepting one message costs (POST /api/v1/messages): a regression guard on the hot
path of the API, not a timing. The budget is what the path needs: the API key with its user, tenant, plan and
membership; the subscription; the session with the contact, conversation and blocked check; the message; plus the
transaction's savepoints. The same with SPEED_PATH_SQL=false: the ORM compiles those statements, it adds none."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from whatsapp.models import WhatsAppSession

pytestmark = pytest.mark.django_db

TO = "+6281234567890"


def accept(client, text):
    return client.post("/api/v1/messages", {"session": "front-desk", "to": TO, "text": text}, format="json")


@pytest.mark.parametrize("speed_path", [pytest.param(True, id="rows"), pytest.param(False, id="orm")])
def test_accepting_a_message_costs_a_fixed_small_number_of_statements(named, clients, settings, speed_path,
                                                                     django_capture_on_commit_callbacks):
    settings.WHATSAPP_RATE_LIMIT_PER_COMPANY = -1
    settings.SPEED_PATH_SQL = speed_path
    with tenant_context(named.acme):
        WhatsAppSession.objects.create(name="front-desk", phone="+14155550123", status="connected")
    client = clients["alice"]
    with django_capture_on_commit_callbacks(execute=False):
        assert accept(client, "first").status_code == 202  # creates the contact and the conversation
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=False):
        response = accept(client, "second")
    assert response.status_code == 202, response.content
    statements = [q["sql"] for q in queries.captured_queries]
    listing = "\n".join(s[:160] for s in statements)
    # Two SET search_path (public for the key, then the tenant's), the key with user, tenant, plan, subscription
    # and membership, the session with the number's conversation and contact and whether it is blocked, the
    # INSERT and a savepoint pair (the test's transaction). The conversation's last message moves in the drain.
    assert len(statements) <= 7, f"{len(statements)} statements:\n{listing}"
    assert not any(s.startswith('UPDATE "whatsapp_conversation"') for s in statements), listing
    assert not any('FROM "accounts_membership"' in s or 'FROM "billing_subscription"' in s for s in statements), listing
    assert sum('"whatsapp_contact"' in s for s in statements) <= 1, listing  # joined to the conversation


def test_a_first_message_to_a_number_creates_its_contact_and_conversation(named, clients, settings,
                                                                         django_capture_on_commit_callbacks):
    """The one-statement lookup is only the common case: a new number still gets its contact and conversation,
    and the next message finds them."""
    from whatsapp.models import Contact, Conversation, Message

    settings.WHATSAPP_RATE_LIMIT_PER_COMPANY = -1
    with tenant_context(named.acme):
        WhatsAppSession.objects.create(name="front-desk", phone="+14155550123", status="connected")
    with django_capture_on_commit_callbacks(execute=False):
        first = accept(clients["alice"], "one").json()["data"]
        second = accept(clients["alice"], "two").json()["data"]
    with tenant_context(named.acme):
        [contact] = Contact.objects.all()
        [conversation] = Conversation.objects.all()
        assert (contact.phone, conversation.contact_id) == (TO, contact.pk)
        assert set(Message.objects.values_list("conversation_id", "contact_id")) == {(conversation.pk, contact.pk)}
    assert first["conversation_id"] == second["conversation_id"] == conversation.pk
