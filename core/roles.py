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

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse

KNOWLEDGE = "knowledge"
AGENT = "agent"
EDITOR = "editor"
ADMIN = "admin"
AUDITOR = "auditor"
ALL_ROLES = (KNOWLEDGE, AGENT, EDITOR, ADMIN, AUDITOR)


def has_role(user: Any, *roles: str) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return bool(user.groups.filter(name__in=roles).exists())


def users_with_role(role: str) -> QuerySet[Any]:
    """Active users who hold `role` (superusers hold every role), by username: who a ticket or
    an item can be assigned to."""
    return (
        get_user_model()
        .objects.filter(Q(groups__name=role) | Q(is_superuser=True), is_active=True)
        .distinct()
        .order_by("username")
    )


def role_required(*roles: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Anonymous: to the login page; signed in without one of `roles`: 403."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_role(request.user, *roles):
                raise PermissionDenied(f"This page needs the role: {' or '.join(roles)}.")
            return view(request, *args, **kwargs)

        return checked

    return decorator
