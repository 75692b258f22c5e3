from django.contrib import admin

from assistant.models import Conversation, Feedback, Message, PinnedAnswer, Site


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("role", "text", "status", "model_version", "prompt_template", "latency_ms")
    readonly_fields = fields
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "collection", "status", "created_at", "updated_at")
    list_filter = ("status", "collection")
    inlines = [MessageInline]


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ("message", "value", "created_at")
    list_filter = ("value",)


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ("name", "key", "collection", "language")
    search_fields = ("name", "key")


@admin.register(PinnedAnswer)
class PinnedAnswerAdmin(admin.ModelAdmin):
    """Curated answers; whoever saves one is recorded as its approver."""

    list_display = ("question", "collection", "active", "approved_by", "updated_at")
    list_filter = ("active", "collection")
    search_fields = ("question", "paraphrases", "answer")
    readonly_fields = ("approved_by", "created_at", "updated_at")

    def save_model(self, request, obj, form, change):
        obj.approved_by = request.user
        super().save_model(request, obj, form, change)
