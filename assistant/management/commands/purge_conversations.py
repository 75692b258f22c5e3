"""Delete conversations older than CHAT_RETENTION_DAYS now (beat also does it every 6 hours)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from assistant.privacy import purge_expired


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options) -> None:
        self.stdout.write(f"purged {purge_expired()} conversations")
