"""`{% load nav %}` … `{% nav_sections as nav_links %}`: the header's menu for the person signed
in, with the current page's section marked (core/nav.py decides both);
`{{ request.user|display_name }}`: their full name, else their username."""

from __future__ import annotations

from typing import Any

from django import template

from core import nav

register = template.Library()


@register.simple_tag(takes_context=True)
def nav_sections(context: template.Context) -> list[dict[str, Any]]:
    request = context.get("request")
    if request is None:
        return []
    match = getattr(request, "resolver_match", None)
    return nav.sections_for(request.user, match.url_name if match else None)


@register.filter
def display_name(user: Any) -> str:
    return nav.display_name(user)
