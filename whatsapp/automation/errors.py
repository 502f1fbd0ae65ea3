"""Error codes of the receptionist's configuration (whatsapp.automation)."""
from core.errors import ErrorCode


class AutomationError(ErrorCode):
    INVALID_SCHEDULE = "invalid_schedule", 400
    INVALID_TIME_ZONE = "invalid_time_zone", 400
    INVALID_HOLIDAYS = "invalid_holidays", 400
    INVALID_PATTERN = "invalid_pattern", 400
    INVALID_RULE = "invalid_rule", 400
    INVALID_BOT_URL = "invalid_bot_url", 400
    TOO_MANY_RULES = "too_many_rules", 400
    # An escalation email that is no address, a Telegram chat id that is none, or too many of them.
    INVALID_ESCALATION = "invalid_escalation", 400
