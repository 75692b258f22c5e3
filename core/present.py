"""Small pieces of how every app presents its rows to the API, the pages and exports."""

from __future__ import annotations

from datetime import date


def iso(value: date | None) -> str | None:
    """A date or time as ISO 8601, None for none."""
    return value.isoformat() if value else None
