from django.db import migrations

PLANS = [
    # code, name, sessions, users, messages/minute, features
    ("free", "Free", 1, 1, 10, {"webhooks": True, "analytics": False, "backups": False}),
    ("basic", "Basic", 5, 3, 30, {"webhooks": True, "analytics": True, "backups": False}),
    ("pro", "Pro", 20, 10, 120, {"webhooks": True, "analytics": True, "backups": True}),
    ("enterprise", "Enterprise", -1, -1, -1, {"webhooks": True, "analytics": True, "backups": True}),
]


def seed(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    for order, (code, name, sessions, users, per_minute, features) in enumerate(PLANS):
        Plan.objects.get_or_create(code=code, defaults=dict(
            name=name, max_sessions=sessions, max_users=users, messages_per_minute=per_minute,
            features=features, sort_order=order,
        ))


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
