"""Error codes of the shared inbox (whatsapp.inbox)."""
from core.errors import ErrorCode


class InboxError(ErrorCode):
    # A member whose role does not answer conversations (a viewer) cannot be given one.
    ASSIGNEE_CANNOT_REPLY = "assignee_cannot_reply", 400
    # Round robin found nobody to give the conversation to.
    NO_AGENTS = "no_agents", 409
    INVALID_FILTER = "invalid_filter", 400
