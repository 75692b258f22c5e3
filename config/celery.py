"""The Celery app. Long work (ingestion, drafting, generation, fine-tuning) runs as tasks.

Embedded default: the filesystem broker under PARLEY_DATA_DIR, run by `manage.py serve`.
Scale-out: CELERY_BROKER_URL=redis://... and `celery -A config worker` on other machines.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("parley")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
