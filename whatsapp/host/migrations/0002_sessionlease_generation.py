from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("whatsapp_host", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="sessionlease",
            name="generation",
            field=models.BigIntegerField(default=0),
        ),
    ]
