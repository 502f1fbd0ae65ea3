"""The session lookup written out with core.rows for message traffic (whatsapp.sessions.events.touch, on every
receipt and inbound message) gives exactly what the ORM reads for the same row, every concrete field."""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from core.tests.instances import assert_same_instance
from whatsapp.models import WhatsAppSession
from whatsapp.sessions import events

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("last_activity", [None, timedelta(seconds=5), timedelta(minutes=5)],
                         ids=["never", "recent", "long ago"])
def test_touch_returns_the_session_as_the_orm_reads_it(named, last_activity):
    now = timezone.now()
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.create(
            name="front-desk", phone="+14155550123", status=WhatsAppSession.Status.CONNECTED,
            last_activity_at=None if last_activity is None else now - last_activity)
        found, bumped = events.touch(session.pk, now)
        assert bumped == (last_activity != timedelta(seconds=5))
        assert_same_instance(found, WhatsAppSession.objects.get(pk=session.pk))


def test_touch_finds_no_deleted_session_and_no_other_tenants(named):
    with tenant_context(named.globex):
        theirs = WhatsAppSession.objects.create(name="front-desk", phone="+14155550999")
    with tenant_context(named.acme):
        assert events.touch(theirs.pk, timezone.now()) == (None, False)
