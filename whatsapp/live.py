"""Live updates of messages and conversations for open pages (Channels groups carrying the schema)."""


def message_changed(message):
    """Tell open conversation pages about a new or changed message, once the transaction commits."""
    return None
