"""The default triage labels (assistant/desk/labels.json): a starting point teams edit in the
admin. Only added where no label of that kind and name exists."""

import json
from pathlib import Path

from django.db import migrations

LABELS = Path(__file__).resolve().parent.parent / "desk" / "labels.json"


def seed(apps, schema_editor):
    TriageLabel = apps.get_model("assistant", "TriageLabel")
    for kind, labels in json.loads(LABELS.read_text()).items():
        for position, label in enumerate(labels):
            TriageLabel.objects.get_or_create(
                kind=kind,
                name=label["name"],
                defaults={
                    "description": label.get("description", ""),
                    "examples": "\n".join(label["examples"]),
                    "rank": label.get("rank", position),
                },
            )


class Migration(migrations.Migration):
    dependencies = [("assistant", "0006_email_desk_review")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
