"""Error codes of contacts, groups and conversations."""
from core.errors import ErrorCode


class ConversationError(ErrorCode):
    INVALID_SEARCH = "invalid_search", 400
    SESSION_NOT_CONNECTED = "session_not_connected", 409
