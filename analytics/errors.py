"""Error codes of analytics, usage and metrics."""
from core.errors import ErrorCode


class AnalyticsError(ErrorCode):
    NOT_IN_PLAN = "feature_not_in_plan", 403
    INVALID_DAYS = "invalid_days", 400
    EVENT_TOO_LARGE = "event_too_large", 413
    INVALID_EVENT = "invalid_event", 400
    INVALID_RANGE = "invalid_range", 400
    INVALID_WINDOW = "invalid_window", 400
    INVALID_METRIC = "invalid_metric", 400
    INVALID_INTERVAL = "invalid_interval", 400
    INVALID_SORT = "invalid_sort", 400
