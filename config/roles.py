"""Roles: Django groups that decide what a person (and their API tokens) may do.

- knowledge: manage the knowledge base (upload, delete, reindex documents)
- agent: answer visitors and email in the console
- editor: work in the content studio
Superusers have every role. Staff pages and the API check roles with `has_role`.
"""

from __future__ import annotations

KNOWLEDGE = "knowledge"
AGENT = "agent"
EDITOR = "editor"
ALL_ROLES = (KNOWLEDGE, AGENT, EDITOR)


def has_role(user, *roles: str) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return user.groups.filter(name__in=roles).exists()
