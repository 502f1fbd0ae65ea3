"""Error codes of WhatsApp sessions (numbers)."""
from core.errors import ErrorCode


class SessionError(ErrorCode):
    ALREADY_LINKED = "already_linked", 409
    ALREADY_RUNNING = "already_running", 409
    CAPACITY_REACHED = "capacity_reached", 503
    DUPLICATE_NAME = "duplicate_name", 409
    INVALID_LIMIT = "invalid_limit", 400
    INVALID_LOCATION = "invalid_location", 400
    INVALID_NAME = "invalid_name", 400
    INVALID_PHONE = "invalid_phone", 400
    INVALID_STATUS = "invalid_status", 400
    MISSING_MEDIA = "missing_media", 400
    MISSING_TEXT = "missing_text", 400
    NOT_CONNECTED = "not_connected", 409
    NOT_LINKED = "not_linked", 409
    NOT_PAIRING = "not_pairing", 409
    NO_QR = "no_qr", 409
    SESSION_NOT_RUNNING = "session_not_running", 409
    WRONG_PHONE = "wrong_phone", 409
