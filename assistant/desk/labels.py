"""The default triage labels (labels.json): a starting point teams edit in the admin."""

from __future__ import annotations

import json
from pathlib import Path

LABELS = Path(__file__).resolve().parent / "labels.json"


def seed_labels(label_model) -> int:
    """Add the default labels that are missing (by kind and name); returns how many were added.
    Takes the model class, so a migration can pass its historical one."""
    added = 0
    for kind, labels in json.loads(LABELS.read_text()).items():
        for position, label in enumerate(labels):
            _, created = label_model.objects.get_or_create(
                kind=kind,
                name=label["name"],
                defaults={
                    "description": label.get("description", ""),
                    "examples": "\n".join(label["examples"]),
                    "rank": label.get("rank", position),
                },
            )
            added += created
    return added
