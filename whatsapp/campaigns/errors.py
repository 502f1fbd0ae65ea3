"""Error codes of broadcasts: contacts and their import, opt-outs, templates and campaigns."""
from core.errors import ErrorCode


class CampaignError(ErrorCode):
    ALREADY_OPTED_OUT = "already_opted_out", 409
    CAMPAIGN_NOT_STARTABLE = "campaign_not_startable", 409
    CAMPAIGN_STATE = "campaign_state", 409
    CONTACT_EXISTS = "contact_exists", 409
    CSV_TOO_LARGE = "csv_too_large", 413
    EMPTY_AUDIENCE = "empty_audience", 400
    INVALID_AUDIENCE = "invalid_audience", 400
    INVALID_CAMPAIGN = "invalid_campaign", 400
    INVALID_CONTACT = "invalid_contact", 400
    INVALID_COUNTRY = "invalid_country", 400
    INVALID_CSV = "invalid_csv", 400
    INVALID_ENCODING = "invalid_encoding", 400
    INVALID_PHONE = "invalid_phone", 400
    INVALID_TEMPLATE = "invalid_template", 400
    MISSING_PHONE_COLUMN = "missing_phone_column", 400
    SESSION_NOT_CONNECTED = "session_not_connected", 409
    TEMPLATE_EXISTS = "template_exists", 409
    TEMPLATE_IN_USE = "template_in_use", 409
    TOO_MANY_RECIPIENTS = "too_many_recipients", 402
    CAMPAIGN_LIMIT_REACHED = "campaign_limit_reached", 402
    UNKNOWN_SESSION = "unknown_session", 400
    UNKNOWN_TEMPLATE = "unknown_template", 400
    UNKNOWN_VARIABLE = "unknown_variable", 400
