"""Error codes of the alert settings and history (the API's error.code)."""
from core.errors import ErrorCode


class AlertError(ErrorCode):
    UNKNOWN_CHANNEL = "unknown_channel", 400
    UNKNOWN_KIND = "unknown_alert_kind", 400
    INVALID_CHAT_ID = "invalid_chat_id", 400
    TOO_MANY_CHAT_IDS = "too_many_chat_ids", 400
    CHAT_IDS_REQUIRED = "chat_ids_required", 400
    TELEGRAM_UNAVAILABLE = "telegram_unavailable", 409
    UNKNOWN_STATE = "unknown_state", 400
