"""Getting in: Parley's sign-in and sign-out pages, and the first-run page that makes the first
administrator (core/setup.py).

Staff pages send anonymous people to the sign-in page (settings.LOGIN_URL); while the
installation has no user at all, that page sends them on to /setup/. After signing in a person
goes to `next` when it names a page of this site (Django's LoginView checks the host and
scheme), else to the first section their roles open.
"""

from __future__ import annotations

import math
import time
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import login
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView, LogoutView
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from core.nav import display_name, sections_for
from core.setup import FirstAdminForm, do_create_first_admin, needs_first_admin


def home_url(user: Any) -> str:
    """Where a person lands after signing in: their first section, else the admin (staff) or
    the site."""
    sections = sections_for(user, None)
    if sections:
        return str(sections[0]["url"])
    return reverse("admin:index") if user.is_staff else "/"


# Failed sign-ins allowed per window, per address and per account name, before that address or
# name must wait for the window to pass. Counted in Django's cache (Redis when REDIS_URL is set,
# so every process shares them). Our own dozen lines rather than django-axes: that one adds
# models, a middleware and an authentication backend for what a counter does here.
SIGNIN_WINDOW = 15 * 60  # seconds


def _signin_keys(request: HttpRequest | None, username: str) -> list[str]:
    window = int(time.time() // SIGNIN_WINDOW)
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    return [
        f"parley:signin:ip:{address}:{window}",
        f"parley:signin:user:{username.strip().casefold()[:150]}:{window}",
    ]


class ThrottledSignIn:
    """Refuses to check a password once an address or an account name has failed too often in
    the current window (the same plain error whether the password would have been right), and
    counts each failure. Mixed into the site's and the admin's sign-in forms."""

    request: HttpRequest | None

    def clean(self) -> dict[str, Any]:
        username = str(self.data.get("username", ""))  # type: ignore[attr-defined]
        keys = _signin_keys(self.request, username)
        allowance = settings.SIGNIN_FAILURES_PER_WINDOW
        if any((cache.get(key) or 0) >= allowance for key in keys):
            wait = math.ceil((SIGNIN_WINDOW - time.time() % SIGNIN_WINDOW) / 60)
            minutes = f"{wait} minute{'s' if wait != 1 else ''}"
            raise ValidationError(
                f"Too many failed sign-ins. Please wait {minutes} and try again.",
                code="throttled",
            )
        try:
            return super().clean()  # type: ignore[misc,no-any-return]
        except ValidationError:
            for key in keys:
                cache.add(key, 0, timeout=SIGNIN_WINDOW * 2)
                cache.incr(key)
            raise


class SignInForm(ThrottledSignIn, AuthenticationForm):
    pass


class AdminSignInForm(ThrottledSignIn, AdminAuthenticationForm):
    pass


class SignInView(LoginView):
    template_name = "registration/login.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if needs_first_admin():
            return redirect("setup")
        return super().dispatch(request, *args, **kwargs)

    def get_default_redirect_url(self) -> str:
        return home_url(self.request.user)


class SignOutView(LogoutView):
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You have signed out.")
        return response


@require_http_methods(["GET", "POST"])
def first_admin(request: HttpRequest) -> HttpResponse:
    """/setup/: only while nobody has an account; then gone (to the sign-in page)."""
    if not needs_first_admin():
        return redirect("signin")
    form = FirstAdminForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        user = do_create_first_admin(
            username=form.cleaned_data["username"],
            display_name=form.cleaned_data["display_name"],
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
        )
        if user is None:  # someone else finished the set-up a moment earlier
            messages.info(request, "An administrator has already been created. Please sign in.")
            return redirect("signin")
        login(request, user)
        messages.success(
            request,
            f"Welcome, {display_name(user)}. You are Parley's administrator: add your colleagues "
            "under Users in the administration, and give each the roles they need.",
        )
        return redirect("console")
    return render(request, "setup.html", {"form": form})
