"""PinnedAnswer as it lived in assistant/ (table assistant_pinnedanswer, created by
assistant/migrations/0003, kept as it is): state only, so an existing database loses nothing."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("assistant", "0011_pinned_answer_moves_to_answers"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="PinnedAnswer",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("collection", models.SlugField(default="default", max_length=64)),
                        ("question", models.CharField(max_length=500)),
                        ("paraphrases", models.TextField(blank=True, help_text="Other ways to ask it, one per line.")),
                        ("answer", models.TextField()),
                        ("source_title", models.CharField(blank=True, max_length=300)),
                        ("source_url", models.CharField(blank=True, help_text="https://... or /kb/ID/", max_length=500)),
                        ("active", models.BooleanField(default=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        ("approved_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        "db_table": "assistant_pinnedanswer",
                        "ordering": ["collection", "question"],
                    },
                ),
            ],
            database_operations=[],
        )
    ]
