from django.contrib import admin

from assistant.models import Conversation, Feedback, Message


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
