"""Error codes of billing: plans, subscriptions, payments and entitlements."""
from core.errors import ErrorCode


class BillingError(ErrorCode):
    ALREADY_CANCELED = "already_canceled", 409
    ALREADY_SUBSCRIBED = "already_subscribed", 409
    DOWNGRADE_BLOCKED = "downgrade_blocked", 409
    INVALID_AMOUNT = "invalid_amount", 400
    INVALID_DAYS = "invalid_days", 400
    INVALID_INTERVAL = "invalid_interval", 400
    INVALID_TRIAL_END = "invalid_trial_end", 400
    NO_CUSTOMER = "no_customer", 409
    NO_PRICE = "no_price", 400
    NOT_ON_TRIAL = "not_on_trial", 409
    OWNER_REQUIRED = "owner_required", 403
    PLAN_LIMIT_REACHED = "plan_limit_reached", 402
    STRIPE_NOT_CONFIGURED = "stripe_not_configured", 409
    STRIPE_UNAVAILABLE = "stripe_unavailable", 502
