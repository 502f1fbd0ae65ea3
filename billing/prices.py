"""The prices every installation starts with, per plan and interval. Platform admins edit them afterwards (Django
admin, Billing › Prices); seeding never touches a price that exists. A year costs ten months. In USD: an installation
billing in another currency (BILLING_CURRENCY) edits them to its own."""
from decimal import Decimal

DEFAULT_CURRENCY = "usd"

DEFAULT_PRICES = {
    # plan code: (monthly, yearly)
    "free": (Decimal("0"), Decimal("0")),
    "basic": (Decimal("29"), Decimal("290")),
    "pro": (Decimal("99"), Decimal("990")),
    "enterprise": (Decimal("299"), Decimal("2990")),
}


def seed_prices(price_model, plan_model):
    """Create the default prices that are missing, for the default plans that exist."""
    for plan in plan_model.objects.filter(code__in=DEFAULT_PRICES):
        for interval, amount in zip(("monthly", "yearly"), DEFAULT_PRICES[plan.code]):
            price_model.objects.get_or_create(plan=plan, interval=interval,
                                              defaults={"amount": amount, "currency": DEFAULT_CURRENCY})
