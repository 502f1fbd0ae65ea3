from django.db import migrations

from tenants.plans import seed_plans


def seed(apps, schema_editor):
    seed_plans(apps.get_model("tenants", "Plan"))


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
