from django import forms
from django.contrib import admin

from assistant.models import (
    Conversation,
    Draft,
    Feedback,
    InboundMail,
    Macro,
    Mailbox,
    MailMessage,
    Message,
    OutboundMail,
    Site,
    Ticket,
    TrainingExample,
    TriageLabel,
)
from core.roles import ADMIN, has_role


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
    raw_id_fields = ("agent", "ticket")
    inlines = [MessageInline]


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ("message", "value", "created_at")
    list_filter = ("value",)


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ("name", "key", "collection", "language", "time_zone", "reply_time")
    search_fields = ("name", "key")
    fieldsets = (
        (None, {"fields": ("name", "key", "allowed_origins", "collection")}),
        ("Widget", {"fields": ("title", "greeting", "color", "language")}),
        (
            "When nobody is online",
            {
                "description": "Visitors who ask for a person while no agent has the console open "
                "are told when to expect a reply and can leave their email address: the chat "
                "becomes a ticket in the email desk.",
                "fields": ("time_zone", "opening_hours", "reply_time"),
            },
        ),
    )


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
    # Status, drafts and sending belong to the review queue (/console/desk/), which records
    # every decision; here they are read-only.
    readonly_fields = (
        "reference",
        "status",
        "category_confidence",
        "priority_confidence",
        "language_confidence",
        "triage",
        "triaged_at",
        "created_at",
        "updated_at",
    )
    inlines = [MailMessageInline]


@admin.register(InboundMail)
class InboundMailAdmin(admin.ModelAdmin):
    """Every mail as it arrived; a failed one shows its error here, raw file kept."""

    list_display = ("received_at", "source", "status", "envelope_from", "from_header", "size", "error")
    list_filter = ("status", "source")
    readonly_fields = (
        "source",
        "sha256",
        "size",
        "path",
        "envelope_from",
        "from_header",
        "subject_header",
        "status",
        "error",
        "attempts",
        "attempted_at",
        "received_at",
    )


@admin.register(TriageLabel)
class TriageLabelAdmin(admin.ModelAdmin):
    """The categories and priorities the desk triages into, by their example messages."""

    list_display = ("kind", "name", "rank", "active", "description", "updated_at")
    list_filter = ("kind", "active")
    search_fields = ("name", "description", "examples")


class MailboxForm(forms.ModelForm):
    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Stored encrypted. Leave empty to keep the current one.",
    )

    class Meta:
        model = Mailbox
        fields = ("name", "host", "port", "use_ssl", "username", "password", "folder", "enabled")


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):
    """IMAP mailboxes the desk polls (every DESK_IMAP_POLL_SECONDS; `manage.py poll_mail` now)."""

    form = MailboxForm
    list_display = (
        "name",
        "username",
        "host",
        "folder",
        "enabled",
        "last_polled_at",
        "last_uid",
        "last_error",
    )
    readonly_fields = ("uidvalidity", "last_uid", "last_polled_at", "last_error")

    def save_model(self, request, obj, form, change):
        if form.cleaned_data.get("password"):
            obj.set_password(form.cleaned_data["password"])
        moved = {"host", "port", "username", "folder"} & set(form.changed_data)
        if change and moved:  # another mailbox or folder: read it from the start
            obj.uidvalidity, obj.last_uid = None, 0
        if not change:
            obj.save()
            return
        # Only what the form edits: a poll running meanwhile keeps its position (last_uid).
        fields = [f for f in form.changed_data if f != "password"] + (
            ["password_encrypted"] if form.cleaned_data.get("password") else []
        )
        if moved:
            fields += ["uidvalidity", "last_uid"]
        if fields:
            obj.save(update_fields=fields)


class RecordAdmin(admin.ModelAdmin):
    """Records the review queue writes: shown, never added or changed here."""

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False


@admin.register(Draft)
class DraftAdmin(RecordAdmin):
    """Every version of every reply, as written (versions are never changed)."""

    list_display = ("ticket", "version", "author", "low_confidence", "model_version", "created_at")
    list_filter = ("low_confidence",)


@admin.register(OutboundMail)
class OutboundMailAdmin(RecordAdmin):
    list_display = ("ticket", "status", "attempts", "to", "sent_at", "last_error")
    list_filter = ("status",)


@admin.register(TrainingExample)
class TrainingExampleAdmin(admin.ModelAdmin):
    """Approved answers kept for fine-tuning."""

    list_display = ("source", "question", "model_draft_unchanged", "approved_by", "created_at")
    list_filter = ("source", "model_draft_unchanged")
    search_fields = ("question", "answer")


@admin.register(Macro)
class MacroAdmin(admin.ModelAdmin):
    """Canned replies agents insert in the live console and on desk tickets: for admins (the
    admin role, whatever Django permissions a staff account has), as in /api/macros."""

    list_display = ("title", "agent", "created_by", "updated_at")
    list_filter = (("agent", admin.EmptyFieldListFilter),)
    search_fields = ("title", "body")
    fields = ("title", "body", "agent", "created_by", "created_at", "updated_at")
    readonly_fields = ("created_by", "created_at", "updated_at")
    raw_id_fields = ("agent",)

    def _admin(self, request) -> bool:
        return has_role(request.user, ADMIN)

    def has_module_permission(self, request):
        return self._admin(request)

    def has_view_permission(self, request, obj=None):
        return self._admin(request)

    def has_add_permission(self, request):
        return self._admin(request)

    def has_change_permission(self, request, obj=None):
        return self._admin(request)

    def has_delete_permission(self, request, obj=None):
        return self._admin(request)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
