"""API authentication and authorisation: a staff session (CSRF checked by django-ninja for
writes) or `Authorization: Bearer <token>` (`manage.py create_api_token USERNAME`, stored
hashed); roles decide what either may do."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer, SessionAuth

from core.errors import DomainError
from core.models import ApiToken, hash_token
from core.roles import has_role


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        try:
            api_token = ApiToken.objects.select_related("user").get(
                token_hash=hash_token(token), revoked_at__isnull=True
            )
        except ApiToken.DoesNotExist:
            return None
        if not api_token.user.is_active:
            return None
        ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=timezone.now())
        request.user = api_token.user
        return api_token.user


class StaffSession(SessionAuth):
    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = super().authenticate(request, key)
        return user if user is not None and user.is_staff else None


def require_api_role(request: HttpRequest, *roles: str) -> None:
    """Refuses (403 `forbidden`) a caller who holds none of `roles`."""
    if not has_role(request.user, *roles):
        raise DomainError("forbidden", f"This needs the role: {' or '.join(roles)}.", 403)
