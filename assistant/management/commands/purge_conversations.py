"""Delete conversations past the governance settings' message retention now (the daily
retention purge, `manage.py purge_retention`, also does it with the other classes of data)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from assistant.chat.privacy import purge_expired


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options) -> None:
        self.stdout.write(f"purged {purge_expired()} conversations")
