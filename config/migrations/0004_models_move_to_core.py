"""The API token, governance settings and audit event models moved to core/ (issue 18: core/ is
what every layer may use). Only Django's record of them moves: the tables keep their names
(`db_table` on the core models) and their rows; core/migrations/0001 adds them to core's state."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("config", "0003_governance")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel("ApiToken"),
                migrations.DeleteModel("GovernanceSettings"),
                migrations.DeleteModel("AuditEvent"),
            ],
            database_operations=[],
        )
    ]
