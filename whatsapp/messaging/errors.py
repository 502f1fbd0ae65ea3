"""Error codes of sending and receiving messages and of the sending policy."""
from core.errors import ErrorCode


class MessagingError(ErrorCode):
    ALREADY_BLOCKED = "already_blocked", 409
    BATCH_OVER_RATE_LIMIT = "batch_over_rate_limit", 400
    BATCH_TOO_LARGE = "batch_too_large", 400
    BLOCKED_RECIPIENT = "blocked_recipient", 400
    CAPTION_TOO_LONG = "caption_too_long", 400
    EMPTY_MEDIA = "empty_media", 400
    IDEMPOTENCY_CONFLICT = "idempotency_conflict", 409
    INVALID_CONTACT = "invalid_contact", 400
    INVALID_DIRECTION = "invalid_direction", 400
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key", 400
    INVALID_LOCATION = "invalid_location", 400
    INVALID_MEDIA_URL = "invalid_media_url", 400
    INVALID_MESSAGES = "invalid_messages", 400
    INVALID_PACING = "invalid_pacing", 400
    INVALID_PHONE = "invalid_phone", 400
    INVALID_REACTION = "invalid_reaction", 400
    INVALID_RECIPIENT = "invalid_recipient", 400
    INVALID_STATUS = "invalid_status", 400
    INVALID_REPLY_TO = "invalid_reply_to", 400
    INVALID_SEARCH = "invalid_search", 400
    MEDIA_TOO_LARGE = "media_too_large", 413
    MEDIA_UNREACHABLE = "media_unreachable", 422
    MEDIA_URL_AND_FILE = "media_url_and_file", 400
    MEDIA_URL_FORBIDDEN = "media_url_forbidden", 400
    MISSING_MEDIA = "missing_media", 400
    MISSING_MESSAGES = "missing_messages", 400
    MISSING_REACTION = "missing_reaction", 400
    MISSING_REPLY_TO = "missing_reply_to", 400
    MISSING_TEXT = "missing_text", 400
    RECIPIENT_NOT_ALLOWED = "recipient_not_allowed", 400
    RECIPIENT_POLICY_INVALID = "recipient_policy_invalid", 503
    SESSION_NOT_CONNECTED = "session_not_connected", 409
    TEXT_TOO_LONG = "text_too_long", 400
    UNEXPECTED_CAPTION = "unexpected_caption", 400
    UNEXPECTED_FILE = "unexpected_file", 400
    UNEXPECTED_MEDIA = "unexpected_media", 400
    UNKNOWN_REPLY_TO = "unknown_reply_to", 400
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415
    UNSUPPORTED_TYPE = "unsupported_type", 400
