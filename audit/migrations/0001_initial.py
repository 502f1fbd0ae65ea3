"""AuditLog moved here from accounts: the table (accounts_auditlog) and its rows stay; only Django's state moves."""
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("accounts", "0001_initial"),
        ("tenants", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditLog",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("action", models.CharField(db_index=True, max_length=60)),
                        ("target_type", models.CharField(max_length=60)),
                        ("target_id", models.CharField(max_length=64)),
                        ("before", models.JSONField(blank=True, default=dict)),
                        ("after", models.JSONField(blank=True, default=dict)),
                        ("created_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ("actor", models.ForeignKey(blank=True, null=True,
                                                    on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                                                    to=settings.AUTH_USER_MODEL)),
                        ("tenant", models.ForeignKey(blank=True, null=True,
                                                     on_delete=django.db.models.deletion.SET_NULL,
                                                     related_name="audit_logs", to="tenants.tenant")),
                    ],
                    options={"db_table": "accounts_auditlog", "ordering": ["-created_at", "-id"]},
                ),
            ],
            database_operations=[],
        ),
    ]
