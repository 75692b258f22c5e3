from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from answers.lookups.manage import do_test_action
from answers.lookups.models import Action, ActionCall
from answers.models import PinnedAnswer
from core.audit import record_audit
from core.errors import DomainError
from core.roles import ADMIN, has_role


@admin.register(PinnedAnswer)
class PinnedAnswerAdmin(admin.ModelAdmin[PinnedAnswer]):
    """Curated answers; whoever saves one is recorded as its approver."""

    list_display = ("question", "collection", "active", "approved_by", "updated_at")
    list_filter = ("active", "collection")
    search_fields = ("question", "paraphrases", "answer")
    readonly_fields = ("approved_by", "created_at", "updated_at")

    def save_model(self, request: HttpRequest, obj: PinnedAnswer, form: Any, change: bool) -> None:
        obj.approved_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)


class ActionForm(forms.ModelForm[Action]):
    """The secret is write-only: typed to set or replace it, never shown back."""

    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        strip=False,
        help_text="An API key or token, stored encrypted; use it in a header as {secret}.",
    )
    remove_secret = forms.BooleanField(required=False, help_text="Remove the stored secret.")

    class Meta:
        model = Action
        fields = (
            "name",
            "enabled",
            "collection",
            "examples",
            "parameters",
            "kind",
            "url",
            "method",
            "headers",
            "secret",
            "remove_secret",
            "timeout_seconds",
            "reply_template",
            "not_found_template",
            "mcp_transport",
            "mcp_target",
            "mcp_tool",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.has_secret:
            self.fields[
                "secret"
            ].help_text = "A secret is set. Type a new one to replace it; leave empty to keep it."


class AdminRoleOnly:
    """Actions call the company's systems with its secrets: the admin role only."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return has_role(request.user, ADMIN) and super().has_module_permission(request)  # type: ignore[misc]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_role(request.user, ADMIN) and super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return has_role(request.user, ADMIN) and super().has_add_permission(request)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_role(request.user, ADMIN) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_role(request.user, ADMIN) and super().has_delete_permission(request, obj)  # type: ignore[misc]


@admin.register(Action)
class ActionAdmin(AdminRoleOnly, admin.ModelAdmin[Action]):
    """Lookups the assistant makes in the company's systems (answers/lookups/)."""

    form = ActionForm
    list_display = ("name", "kind", "enabled", "collection", "version", "updated_at")
    list_filter = ("enabled", "kind")
    search_fields = ("name", "examples", "url")
    readonly_fields = ("version", "created_at", "updated_at")
    actions = ["test_actions", "list_tools"]

    def save_model(self, request: HttpRequest, obj: Action, form: Any, change: bool) -> None:
        secret_changed = bool(form.cleaned_data.get("remove_secret") or form.cleaned_data.get("secret"))
        if form.cleaned_data.get("remove_secret"):
            obj.set_secret("")
        elif form.cleaned_data.get("secret"):
            obj.set_secret(form.cleaned_data["secret"])
        super().save_model(request, obj, form, change)
        record_audit(
            request.user,
            "action.change" if change else "action.create",
            target_type="action",
            target_id=obj.pk,
            name=obj.name,
            version=obj.version,
            fields=sorted(f for f in form.changed_data if f not in ("secret", "remove_secret")),
            secret_changed=secret_changed,
        )

    def delete_model(self, request: HttpRequest, obj: Action) -> None:
        record_audit(request.user, "action.delete", target_type="action", target_id=obj.pk, name=obj.name)
        super().delete_model(request, obj)

    @admin.action(description="Test this action with its example values")
    def test_actions(self, request: HttpRequest, queryset: QuerySet[Action]) -> None:
        for action in queryset:
            try:
                reply = do_test_action(request.user, action)
            except DomainError as exc:
                self.message_user(request, f"{action.name}: {exc.message}", messages.ERROR)
                continue
            level = messages.SUCCESS if reply.status == ActionCall.Status.OK else messages.WARNING
            detail = f" ({reply.call.error})" if reply.call.error else ""
            self.message_user(
                request, f"{action.name}: {reply.status}{detail}. The reply: {reply.text}", level
            )

    @admin.action(description="List the tools of its MCP server (to pick the tool)")
    def list_tools(self, request: HttpRequest, queryset: QuerySet[Action]) -> None:
        from answers.lookups.mcp import McpError
        from answers.lookups.runner import mcp_tools

        for action in queryset:
            try:
                tools = mcp_tools(action)
            except McpError as exc:
                self.message_user(request, f"{action.name}: {exc.message}", messages.ERROR)
                continue
            named = "; ".join(
                f"{t['name']}: {(t.get('description') or '').strip()[:120]}" for t in tools[:30]
            )
            self.message_user(
                request, f"{action.name}: {len(tools)} tool(s). {named or 'None.'}", messages.INFO
            )


@admin.register(ActionCall)
class ActionCallAdmin(AdminRoleOnly, admin.ModelAdmin[ActionCall]):
    """Every attempt to use an action: read only."""

    list_display = (
        "created_at",
        "action_name",
        "action_version",
        "status",
        "http_status",
        "latency_ms",
        "caller",
    )
    list_filter = ("status", "action_name")
    search_fields = ("conversation", "action_name")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
