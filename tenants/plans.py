"""The plans every installation starts with. Platform admins edit them afterwards (Django admin)."""

DEFAULT_PLANS = [
    # code, name, sessions, users, messages/minute, features
    ("free", "Free", 1, 1, 10, {"webhooks": True, "analytics": False, "backups": False}),
    ("basic", "Basic", 5, 3, 30, {"webhooks": True, "analytics": True, "backups": False}),
    ("pro", "Pro", 20, 10, 120, {"webhooks": True, "analytics": True, "backups": True}),
    ("enterprise", "Enterprise", -1, -1, -1, {"webhooks": True, "analytics": True, "backups": True}),
]


def seed_plans(plan_model):
    """Create the default plans that are missing; never touches edited ones."""
    for order, (code, name, sessions, users, per_minute, features) in enumerate(DEFAULT_PLANS):
        plan_model.objects.get_or_create(code=code, defaults=dict(
            name=name, max_sessions=sessions, max_users=users, messages_per_minute=per_minute,
            features=features, sort_order=order,
        ))
