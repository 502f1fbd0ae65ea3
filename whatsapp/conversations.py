"""Contacts, groups and conversations: who a session talks to. Called by whatsapp.messaging in the tenant's
schema, inside its transactions."""


def for_outgoing(session, phone, chat_jid):
    """(conversation, contact) for a message being queued to `chat_jid`."""
    return None, None


def for_inbound(session, message, data):
    """(conversation, contact) for a received message (`data` is the provider's MESSAGE event)."""
    return None, None
