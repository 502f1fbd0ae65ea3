"""What the session host hands broadcasts (registered by WhatsappConfig.ready(), after messaging stored the message):
an inbound message from a number counts as a reply to the campaigns that messaged it, and one that is only an
opt-out word puts the number on the workspace's opt-out list."""
import logging

from django.db import transaction
from django_tenants.utils import schema_context

from whatsapp.sessions.models import WhatsAppSession

from . import actions

log = logging.getLogger(__name__)


def on_message(event):
    data = event.data or {}
    if data.get("from_me") or str(data.get("chat") or "").endswith("@g.us"):
        return None
    phone = str(data.get("sender_phone") or "")
    if not phone.startswith("+"):
        return None
    schema_name, session_id = event.session_key.split(":", 1)
    with schema_context(schema_name):
        session = WhatsAppSession.objects.filter(pk=int(session_id)).first()
        if session is None:
            return None
        with transaction.atomic():
            actions.on_inbound_text(session, phone=phone, text=str(data.get("text") or ""))
    return None
