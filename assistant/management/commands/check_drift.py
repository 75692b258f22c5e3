"""Compare the last DRIFT_RECENT_DAYS of visitors' questions with the DRIFT_REFERENCE_DAYS before
them, per collection, store a drift report each and print them as one JSON object (the daily
Celery beat job does the same)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from assistant.insights.drift import check_drift, report_dict


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options) -> None:
        reports = [report_dict(report) for report in check_drift()]
        self.stdout.write(
            json.dumps({"reports": reports, "alert": any(r["alert"] for r in reports)}, indent=2)
        )
