from django.contrib import admin

from retrieval.models import Chunk, Document


class ChunkInline(admin.TabularInline):
    model = Chunk
    extra = 0
    fields = ("ordinal", "section", "token_count", "text")
    readonly_fields = fields
    can_delete = False


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("title", "collection", "status", "language", "updated_at")
    list_filter = ("collection", "status", "language")
    search_fields = ("title", "source")
    readonly_fields = ("content_hash", "status", "error", "created_at", "updated_at")
    inlines = [ChunkInline]
