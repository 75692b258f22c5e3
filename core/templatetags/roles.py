"""`{% load roles %}` … `{% if request.user|has_role:"admin,auditor" %}`: show a console link
only to people whose role lets them open it (the view checks again)."""

from __future__ import annotations

from typing import Any

from django import template

from core.roles import has_role as _has_role

register = template.Library()


@register.filter
def has_role(user: Any, roles: str) -> bool:
    return _has_role(user, *(role.strip() for role in roles.split(",") if role.strip()))
