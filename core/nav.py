"""The staff pages' one menu: every section a person's roles open, in one place, so the console,
the desk, analytics, governance and the studio show the same header (templates/base.html asks
for it through `{% nav_sections %}` in core/templatetags/nav.py).

A section lists the URL names of its pages: the page being shown marks its section as current.
The views check the roles again; the menu only leaves out what a person could not open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.urls import reverse

from core.roles import ADMIN, AGENT, ALL_ROLES, AUDITOR, EDITOR


@dataclass(frozen=True)
class Section:
    label: str
    url_name: str  # where the menu link goes
    roles: tuple[str, ...]  # any one of them opens the section
    pages: tuple[str, ...]  # URL names of its pages; one ending in "-" covers the names it begins

    def has(self, url_name: str | None) -> bool:
        if not url_name:
            return False
        return any(url_name == p or (p.endswith("-") and url_name.startswith(p)) for p in self.pages)


SECTIONS = (
    Section("Live chats", "console", (AGENT,), ("console",)),
    Section("Email desk", "desk", (AGENT,), ("desk", "desk-")),
    Section("Analytics", "console-analytics", (AGENT,), ("console-analytics", "console-export")),
    Section("Studio", "studio", (EDITOR,), ("studio", "studio-")),
    Section("Governance", "governance", (ADMIN,), ("governance",)),
    Section("Audit log", "audit", (ADMIN, AUDITOR), ("audit", "audit-")),
    Section(
        "Models",
        "console-models",
        (ADMIN, AUDITOR),
        ("console-models", "console-model", "console-model-", "console-finetune"),
    ),
)


def roles_of(user: Any) -> frozenset[str]:
    """The roles a person holds, in one query (superusers hold every role)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    if user.is_superuser:
        return frozenset(ALL_ROLES)
    return frozenset(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))


def sections_for(user: Any, current_url_name: str | None) -> list[dict[str, Any]]:
    """The sections `user` may open, in menu order, each with its link and whether the page
    named `current_url_name` belongs to it."""
    held = roles_of(user)
    sections = [
        {
            "label": s.label,
            "url": reverse(s.url_name),
            "current": s.has(current_url_name),
        }
        for s in SECTIONS
        if held.intersection(s.roles)
    ]
    if held and user.is_staff and (user.is_superuser or user.get_all_permissions()):
        # Sites, people and their roles, documents: the Django admin, for whoever may change
        # something there. Its own pages keep its own look, so it is never the current section.
        sections.append({"label": "Administration", "url": reverse("admin:index"), "current": False})
    return sections


def display_name(user: Any) -> str:
    """What the header calls a person: their full name, else their username."""
    return (user.get_full_name() or "").strip() or user.get_username()
