"""The first run: while the installation has no user at all, /setup/ makes the first
administrator (a superuser holding every role), so a new install needs no command line to get in.

Once anyone exists the page is gone. Two submissions at the same moment make one administrator:
the check and the insert run in one transaction holding a row lock on the admin role's group
(SQLite, which ignores row locks, takes its write lock when the transaction begins: settings'
"IMMEDIATE" transaction mode), so the second one finds the first one's user and is refused.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction

from core.audit import record_audit
from core.roles import ADMIN, ALL_ROLES


def needs_first_admin() -> bool:
    """True while nobody at all has an account."""
    return not get_user_model().objects.exists()


class FirstAdminForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        help_text="What you sign in with: letters, digits and @ . + - _ only.",
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    display_name = forms.CharField(
        max_length=150,
        required=False,
        help_text="How colleagues and visitors see you, e.g. Sam Taylor. Optional.",
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    email = forms.EmailField(widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"]
        user_model = get_user_model()
        user_model.username_validator(username)
        return username

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        first, second = data.get("password1"), data.get("password2")
        if first and second and first != second:
            self.add_error("password2", "The two passwords are not the same.")
        elif first:
            # The validators compare the password with the name and address it must not resemble.
            candidate = get_user_model()(
                username=data.get("username", ""),
                email=data.get("email", ""),
                first_name=data.get("display_name", ""),
            )
            try:
                password_validation.validate_password(first, candidate)
            except ValidationError as exc:
                self.add_error("password1", exc)
        return data


def do_create_first_admin(*, username: str, display_name: str, email: str, password: str) -> Any | None:
    """The first administrator, with every role; None when someone already has an account."""
    user_model = get_user_model()
    with transaction.atomic():
        # Serialises concurrent set-ups (see the module's docstring).
        Group.objects.select_for_update().get_or_create(name=ADMIN)
        if user_model.objects.exists():
            return None
        user = user_model.objects.create_superuser(
            username=username, email=email, password=password, first_name=display_name.strip()
        )
        # Superusers hold every role anyway (core/roles.py); the groups make it visible where
        # roles are listed (the admin's user page) and keep it so if superuser is taken away.
        user.groups.add(*(Group.objects.get_or_create(name=role)[0] for role in ALL_ROLES))
        record_audit(user, "setup.first_admin", target_type="user", target_id=user.pk)
    return user
