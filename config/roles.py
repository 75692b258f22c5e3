"""Roles: Django groups that decide what a person (and their API tokens) may do.

- knowledge: manage the knowledge base (upload, delete, reindex documents)
- agent: answer visitors and email in the console
- editor: work in the content studio
- admin: governance (legal basis, retention, redaction settings), erasure of personal data,
  promoting and rolling back model versions, fine-tuning
- auditor: read only: the audit log, model versions and cards, evaluations and monitoring
Superusers have every role. Staff pages and the API check roles with `has_role`.
"""

from __future__ import annotations

KNOWLEDGE = "knowledge"
AGENT = "agent"
EDITOR = "editor"
ADMIN = "admin"
AUDITOR = "auditor"
ALL_ROLES = (KNOWLEDGE, AGENT, EDITOR, ADMIN, AUDITOR)


def has_role(user, *roles: str) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return user.groups.filter(name__in=roles).exists()
