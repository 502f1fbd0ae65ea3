"""Creating, starting and stopping sessions: validation, plan limits, leases."""

import pytest
from django.db import connection
from django.utils import timezone

from billing.models import Subscription
from core.errors import DomainError
from whatsapp.host.models import SessionLease
from whatsapp.models import SessionActivity, WhatsAppSession
from whatsapp.sessions import actions


@pytest.fixture
def in_acme(named):
    connection.set_tenant(named.acme)
    yield named
    connection.set_schema_to_public()


def code_of(call):
    with pytest.raises(DomainError) as error:
        call()
    return error.value.code


def test_create_validates_names_and_duplicates(in_acme):
    named = in_acme
    session = actions.create_session(named.acme, acting_user=named.alice, name="front-desk", label="Front desk")
    assert session.status == "new" and not session.should_run
    assert SessionActivity.objects.get(session=session).kind == "created"
    for bad in ("", "has space", "x" * 65, "émoji"):
        assert code_of(lambda: actions.create_session(named.acme, acting_user=named.alice, name=bad)) == "invalid_name"
    assert code_of(lambda: actions.create_session(named.acme, acting_user=named.alice,
                                                  name="front-desk")) == "duplicate_name"
    assert WhatsAppSession.objects.count() == 1


def test_plan_limit_is_enforced_with_the_upgrade_path(in_acme):
    named = in_acme
    for i in range(5):  # Basic allows 5
        actions.create_session(named.acme, acting_user=named.alice, name=f"s{i}")
    with pytest.raises(DomainError) as error:
        actions.create_session(named.acme, acting_user=named.alice, name="s6")
    assert error.value.status == 402 and error.value.code == "plan_limit_reached"
    assert "Basic plan allows 5 WhatsApp sessions" in error.value.message
    assert WhatsAppSession.objects.count() == 5


def test_sessions_of_another_tenant_do_not_count_or_show(named):
    connection.set_tenant(named.globex)
    try:
        actions.create_session(named.globex, acting_user=named.carol, name="front-desk")
        assert WhatsAppSession.objects.count() == 1
    finally:
        connection.set_schema_to_public()
    connection.set_tenant(named.acme)
    try:
        assert WhatsAppSession.objects.count() == 0
        actions.create_session(named.acme, acting_user=named.alice, name="front-desk")  # same name, other tenant
    finally:
        connection.set_schema_to_public()


def test_start_hands_the_session_to_a_host_and_stop_takes_it_back(in_acme, django_capture_on_commit_callbacks):
    named = in_acme
    session = actions.create_session(named.acme, acting_user=named.alice, name="front-desk")
    with django_capture_on_commit_callbacks(execute=True):
        session = actions.start_session(named.acme, session, acting_user=named.alice)
    assert session.should_run and session.status == "starting"
    lease = SessionLease.objects.get()
    assert (lease.schema_name, lease.session_id, lease.host_id) == ("t_test_acme", session.pk, "")
    assert code_of(lambda: actions.start_session(named.acme, session, acting_user=named.alice)) == "already_running"
    with django_capture_on_commit_callbacks(execute=True):
        session = actions.stop_session(named.acme, session, acting_user=named.alice)
    assert not session.should_run and session.status == "stopped"
    assert not SessionLease.objects.exists()


def test_unpaid_tenants_cannot_create_or_start(in_acme):
    named = in_acme
    session = actions.create_session(named.acme, acting_user=named.alice, name="front-desk")
    Subscription.objects.filter(tenant=named.acme).update(status="read_only", read_only_since=timezone.now())
    named.acme.refresh_from_db()
    with pytest.raises(DomainError) as error:
        actions.start_session(named.acme, session, acting_user=named.alice)
    assert error.value.status == 402 and error.value.code == "payment_required"
    assert code_of(lambda: actions.create_session(named.acme, acting_user=named.alice,
                                                  name="other")) == "payment_required"
    assert not SessionLease.objects.exists()


def test_global_session_capacity(in_acme, settings, django_capture_on_commit_callbacks):
    named = in_acme
    settings.WHATSAPP_MAX_SESSIONS = 1
    first = actions.create_session(named.acme, acting_user=named.alice, name="one")
    second = actions.create_session(named.acme, acting_user=named.alice, name="two")
    with django_capture_on_commit_callbacks(execute=True):
        actions.start_session(named.acme, first, acting_user=named.alice)
    with pytest.raises(DomainError) as error:
        actions.start_session(named.acme, second, acting_user=named.alice)
    assert error.value.status == 503 and error.value.code == "capacity_reached"
