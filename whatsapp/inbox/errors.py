"""Error codes of the shared inbox (whatsapp.inbox)."""
from core.errors import ErrorCode


class InboxError(ErrorCode):
    # A member whose role does not answer conversations (a viewer) cannot be given one.
    ASSIGNEE_CANNOT_REPLY = "assignee_cannot_reply", 400
    # Round robin found nobody to give the conversation to.
    NO_AGENTS = "no_agents", 409
    INVALID_FILTER = "invalid_filter", 400
    CANNED_CODE_TAKEN = "canned_code_taken", 409
    TOO_MANY_CANNED_REPLIES = "too_many_canned_replies", 400
    # A note may be deleted by its author, or by an owner or admin.
    NOT_YOUR_NOTE = "not_your_note", 403
    SESSION_NOT_CONNECTED = "session_not_connected", 409
    # An auto-assignment mode that is not off, round_robin or member, or member without a member_id.
    INVALID_AUTO_ASSIGN = "invalid_auto_assign", 400
