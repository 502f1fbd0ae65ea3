"""AuditLog lives in the audit app now (audit.0001 takes over its table); only Django's state changes here."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="AuditLog")],
                                            database_operations=[]),
    ]
