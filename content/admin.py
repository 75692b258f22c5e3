from django.contrib import admin
from django.db import models

from content.models import (
    Brief,
    Comment,
    ContentImage,
    ContentItem,
    Regeneration,
    Revision,
    StateChange,
    StudioSettings,
    WebhookDelivery,
)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RevisionInline(ReadOnlyInline):
    model = Revision
    fields = ("number", "author", "note", "created_at")


class StateChangeInline(ReadOnlyInline):
    model = StateChange
    fields = ("action", "from_state", "to_state", "user", "reason", "created_at")


@admin.register(ContentItem)
class ContentItemAdmin(admin.ModelAdmin):
    """Items are edited and moved in the studio (/studio/), which records every change; here
    they are read-only."""

    list_display = ("title", "state", "generation", "assignee", "due_date", "updated_at")
    list_filter = ("state", "generation")
    search_fields = ("title", "brief__keyphrase")
    inlines = [RevisionInline, StateChangeInline]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Brief)
class BriefAdmin(admin.ModelAdmin):
    list_display = ("topic", "keyphrase", "language", "length", "created_by", "created_at")
    search_fields = ("topic", "keyphrase")


@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    list_display = ("item", "anchor", "author", "resolved", "created_at")


@admin.register(ContentImage)
class ContentImageAdmin(admin.ModelAdmin):
    list_display = ("item", "slot", "status", "width", "height", "chosen", "rejected", "meaningful")
    list_filter = ("status", "chosen")


@admin.register(Regeneration)
class RegenerationAdmin(admin.ModelAdmin):
    list_display = ("item", "part", "status", "requested_by", "revision", "created_at", "finished_at")
    list_filter = ("status",)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("item", "url", "status", "attempts", "last_status_code", "delivered_at")
    list_filter = ("status",)


@admin.register(StudioSettings)
class StudioSettingsAdmin(admin.ModelAdmin):
    """One row: the site the studio's articles are published on (its name ends new meta titles)."""

    list_display = ("__str__", "site_name", "site_url", "updated_at")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # "www.example.com" works too

    def has_add_permission(self, request):
        return super().has_add_permission(request) and not StudioSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        obj.pk = 1  # the one row StudioSettings.current() reads
        super().save_model(request, obj, form, change)
