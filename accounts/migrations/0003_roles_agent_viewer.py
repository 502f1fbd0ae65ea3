from django.db import migrations, models


def members_become_agents(apps, schema_editor):
    apps.get_model("accounts", "Membership").objects.filter(role="member").update(role="agent")


def agents_become_members(apps, schema_editor):
    apps.get_model("accounts", "Membership").objects.filter(role__in=["agent", "viewer"]).update(role="member")


class Migration(migrations.Migration):
    """Four roles (core.permissions): owner, admin, agent, viewer; yesterday's members are agents."""

    dependencies = [("accounts", "0002_auditlog_moved_to_audit")]

    operations = [
        migrations.AlterField(
            model_name="membership",
            name="role",
            field=models.CharField(choices=[("owner", "Owner"), ("admin", "Admin"), ("agent", "Agent"),
                                            ("viewer", "Viewer")], default="agent", max_length=10),
        ),
        migrations.RunPython(members_become_agents, agents_become_members),
    ]
