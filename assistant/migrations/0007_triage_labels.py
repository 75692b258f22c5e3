"""The default triage labels (assistant/desk/labels.json), added where missing."""

from django.db import migrations


def seed(apps, schema_editor):
    from assistant.desk.labels import seed_labels

    seed_labels(apps.get_model("assistant", "TriageLabel"))


class Migration(migrations.Migration):
    dependencies = [("assistant", "0006_email_desk_review")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
