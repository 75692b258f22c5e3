"""What the staff pages (console, desk, studio) share: a POST on one object that shows the
outcome as a message and goes back to the object's page."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from core.errors import DomainError

Decorator = Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]


def post_action(
    load: Callable[[int], Any], page: str, key: str, guard: Decorator
) -> Callable[[Callable[..., str]], Callable[..., HttpResponse]]:
    """Makes `view(request, obj, **rest)`, which returns a success message, a page action: POST
    only, behind `guard` (a role check); the object is `load(kwargs[key])`; a DomainError's
    message is shown instead of the success; then back to URL `page` with `key` = the object's pk."""

    def decorator(view: Callable[..., str]) -> Callable[..., HttpResponse]:
        @require_POST
        @guard
        @wraps(view)
        def acted(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            found = load(kwargs.pop(key))
            try:
                messages.success(request, view(request, found, **kwargs))
            except DomainError as exc:
                messages.error(request, exc.message)
            response: HttpResponse = redirect(page, **{key: found.pk})
            return response

        return acted

    return decorator
