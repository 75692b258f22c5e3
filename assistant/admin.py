from django.contrib import admin

from assistant.models import (
    Conversation,
    Feedback,
    InboundMail,
    MailMessage,
    Message,
    PinnedAnswer,
    Site,
    Ticket,
)


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


class MailMessageInline(admin.StackedInline):
    model = MailMessage
    extra = 0
    fields = ("direction", "from_email", "subject", "sent_at", "automated", "reply_text", "text", "defects")
    readonly_fields = fields
    can_delete = False


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    """Email desk tickets (the review queue in the console builds on these)."""

    list_display = ("reference", "subject", "customer_email", "status", "category", "priority", "updated_at")
    list_filter = ("status", "category", "priority")
    search_fields = ("reference", "subject", "customer_email")
    readonly_fields = ("reference", "created_at", "updated_at")
    inlines = [MailMessageInline]


@admin.register(InboundMail)
class InboundMailAdmin(admin.ModelAdmin):
    """Every mail as it arrived; a failed one shows its error here, raw file kept."""

    list_display = ("received_at", "source", "status", "envelope_from", "size", "error")
    list_filter = ("status", "source")
    readonly_fields = ("source", "sha256", "size", "path", "envelope_from", "status", "error", "received_at")
