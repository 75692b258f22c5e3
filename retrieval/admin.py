from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path

from retrieval.actions.create import (
    do_create_document_from_upload,
    do_create_document_from_url,
    do_queue_processing,
)
from retrieval.actions.delete import do_delete_document
from retrieval.errors import IngestError
from retrieval.models import COLLECTION_NAME, Chunk, Document


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        clean = super().clean
        return [clean(d, initial) for d in data] if isinstance(data, list | tuple) else [clean(data, initial)]


class UploadForm(forms.Form):
    # Not `files`: that is the form's own dict of uploaded files.
    uploads = MultipleFileField(widget=MultipleFileInput, required=False, label="Files")
    urls = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="Web pages or sitemaps, one URL per line.",
    )
    collection = forms.RegexField(regex=COLLECTION_NAME, initial="default")
    public = forms.BooleanField(
        required=False, initial=True, help_text="Visitors may open these documents from citations."
    )


if TYPE_CHECKING:
    _ChunkInlineBase = admin.TabularInline[Chunk, Document]
else:  # generic in django-stubs only: django_stubs_ext.monkeypatch() leaves the inlines out
    _ChunkInlineBase = admin.TabularInline


class ChunkInline(_ChunkInlineBase):
    model = Chunk
    extra = 0
    fields = ("ordinal", "section", "page", "kind", "token_count", "text")
    readonly_fields = fields
    can_delete = False


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin[Document]):
    list_display = ("title", "collection", "kind", "status", "progress", "language", "updated_at")
    list_filter = ("collection", "status", "kind", "language")
    search_fields = ("title", "source")
    readonly_fields = (
        "source",
        "kind",
        "content_hash",
        "status",
        "progress",
        "error_code",
        "error",
        "size_bytes",
        "original",
        "created_at",
        "updated_at",
    )
    inlines = [ChunkInline]
    actions = ["reprocess"]
    change_list_template = "admin/retrieval/document_change_list.html"

    def get_urls(self) -> list[URLPattern]:
        return [
            path("upload/", self.admin_site.admin_view(self.upload_view), name="retrieval_document_upload"),
            *super().get_urls(),
        ]

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("retrieval.add_document"):
            return redirect("admin:index")
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            queued = failed = 0
            options = {"collection": form.cleaned_data["collection"], "public": form.cleaned_data["public"]}
            for upload in form.cleaned_data["uploads"] or []:
                try:
                    do_create_document_from_upload(upload, **options)
                    queued += 1
                except IngestError as exc:
                    failed += 1
                    messages.error(request, f"{upload.name}: {exc.message}")
            for url in filter(None, (u.strip() for u in form.cleaned_data["urls"].splitlines())):
                try:
                    do_create_document_from_url(url, **options)
                    queued += 1
                except IngestError as exc:
                    failed += 1
                    messages.error(request, f"{url}: {exc.message}")
            messages.success(request, f"{queued} document(s) queued; progress shows in the list.")
            return redirect("admin:retrieval_document_changelist")
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": "Add documents",
            "opts": self.model._meta,
        }
        return render(request, "admin/retrieval/upload.html", context)

    @admin.action(description="Process again")
    def reprocess(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset:
            do_queue_processing(document)
        messages.success(request, f"{queryset.count()} document(s) queued.")

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        do_delete_document(obj)  # its vectors go too, not just the row

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset:
            do_delete_document(document)
