"""Error codes of webhook endpoints and deliveries."""
from core.errors import ErrorCode


class WebhookError(ErrorCode):
    ENDPOINT_DISABLED = "endpoint_disabled", 409
    INVALID_EVENTS = "invalid_events", 400
    INVALID_STATUS = "invalid_status", 400
    INVALID_URL = "invalid_url", 400
    UNKNOWN_EVENT = "unknown_event", 400
