"""PinnedAnswer moved to answers/ (issue 18: the one answer path owns its curated answers). Only
Django's record of it moves: the table keeps its name (`db_table` on answers.PinnedAnswer) and its
rows; answers/migrations/0001 adds it to answers' state. No foreign key points at it."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("assistant", "0010_desk_hostile_mail")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel("PinnedAnswer")],
            database_operations=[],
        )
    ]
