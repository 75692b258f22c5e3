from django.contrib import admin

from inference.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("key", "kind", "status", "dtype", "created_at", "activated_at")
    list_filter = ("kind", "status")
    search_fields = ("key", "name", "source")
    readonly_fields = ("key", "sha256", "created_at", "activated_at")
