"""The model registry in the admin: versions (read-only but for the actions) and the audit trail.

Status changes go only through the actions in inference/actions.py, as the `models` command's
do, so every change is checked and recorded. Activating and rolling back need superuser or the
`inference.activate_modelversion` permission.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from inference.actions import (
    Actor,
    RegistryError,
    do_activate_model_version,
    do_retire_model_version,
    do_rollback,
)
from inference.models import ModelEvent, ModelVersion

if TYPE_CHECKING:
    _EventInlineBase = admin.TabularInline[ModelEvent, ModelVersion]
else:  # generic in django-stubs only: django_stubs_ext.monkeypatch() leaves the inlines out
    _EventInlineBase = admin.TabularInline


def _actor(request: HttpRequest) -> Actor:
    user = request.user
    assert isinstance(user, AbstractBaseUser)  # the admin lets only signed-in staff this far
    return user


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class ModelEventInline(ReadOnlyMixin, _EventInlineBase):
    model = ModelEvent
    fk_name = "version"
    fields = ("created_at", "action", "previous", "actor", "reason")
    readonly_fields = fields
    extra = 0
    ordering = ("-id",)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin[ModelVersion]):
    list_display = ("key", "kind", "status", "dtype", "files_present", "created_at", "activated_at")
    list_filter = ("kind", "status")
    search_fields = ("key", "name", "source")
    # Versions come from prepare_models and fine-tuning, and their status from the actions below:
    # editing any of these by hand would bypass the checks and the audit trail.
    readonly_fields = (
        "key",
        "kind",
        "name",
        "base",
        "adapter",
        "dtype",
        "source",
        "path",
        "sha256",
        "status",
        "created_at",
        "activated_at",
    )
    inlines = [ModelEventInline]
    actions = ["activate", "roll_back", "retire"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        return False  # messages point at versions: the record of what produced them stays

    def has_activate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("inference.activate_modelversion")

    @admin.display(boolean=True, description="files")
    def files_present(self, obj: ModelVersion) -> bool:
        return obj.files_present

    @admin.action(description="Activate the selected version", permissions=["activate"])
    def activate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        try:
            version = do_activate_model_version(queryset.get(), actor=_actor(request), reason="via admin")
        except RegistryError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, f"{version.key} is now the active {version.kind} model.", messages.SUCCESS)

    @admin.action(description="Roll back the selected versions' kinds", permissions=["activate"])
    def roll_back(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for kind in sorted(set(queryset.values_list("kind", flat=True))):
            try:
                version = do_rollback(kind, actor=_actor(request), reason="via admin")
            except RegistryError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"Rolled back: {version.key} is active again.", messages.SUCCESS)

    @admin.action(description="Retire the selected candidates", permissions=["activate"])
    def retire(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for version in queryset:
            try:
                do_retire_model_version(version, actor=_actor(request), reason="via admin")
            except RegistryError as exc:
                self.message_user(request, exc.message, messages.ERROR)


@admin.register(ModelEvent)
class ModelEventAdmin(ReadOnlyMixin, admin.ModelAdmin[ModelEvent]):
    list_display = ("created_at", "action", "version", "previous", "actor", "reason")
    list_filter = ("action", "version__kind")
    search_fields = ("version__key", "actor", "reason")
    list_select_related = ("version", "previous")
