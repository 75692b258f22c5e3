"""Template tags for monitoring notices on staff pages: `{% load monitoring %}`."""

from __future__ import annotations

from typing import Any

from django import template

from assistant.insights.drift import latest_alerts

register = template.Library()


@register.simple_tag
def drift_alerts() -> list[dict[str, Any]]:
    """The collections whose latest drift report alerts (see assistant/insights/drift.py)."""
    return latest_alerts()
