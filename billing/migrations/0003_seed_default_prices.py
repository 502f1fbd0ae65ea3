from django.db import migrations

from billing.prices import seed_prices


def seed(apps, schema_editor):
    seed_prices(apps.get_model("billing", "Price"), apps.get_model("tenants", "Plan"))


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_subscriptions_for_existing_tenants"), ("tenants", "0002_seed_plans")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
