"""The knowledge base: documents and their chunks. The database is the source of truth; the
FAISS index on disk is derived from it (chunk primary keys are the vector ids)."""

from __future__ import annotations

import re

from django.db import models

# Collection names become file names of the index: letters, digits, "-" and "_" only.
COLLECTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Document(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        READY = "ready"
        FAILED = "failed"

    collection = models.SlugField(max_length=64, default="default")
    title = models.CharField(max_length=300)
    kind = models.CharField(max_length=16, blank=True)  # loader that parsed it: pdf, docx, html, ...
    # Where it came from (a file path or URL) and where a reader can see it (for citations).
    source = models.CharField(max_length=1000)
    url = models.CharField(max_length=1000, blank=True)
    language = models.CharField(max_length=16, default="en")
    content_hash = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error_code = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    progress = models.PositiveSmallIntegerField(default=0)  # percent, while processing
    size_bytes = models.PositiveBigIntegerField(default=0)
    # The uploaded or fetched original, kept so a document can be re-processed (relative to
    # PARLEY_DATA_DIR/media); empty for files ingested in place from a path.
    original = models.CharField(max_length=500, blank=True)
    # Public documents can be shown to website visitors through citation links.
    public = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["collection", "source"], name="unique_source_per_collection")
        ]
        ordering = ["collection", "title"]

    def __str__(self) -> str:
        return self.title


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    section = models.CharField(max_length=500, blank=True)  # "Title > Section > Subsection"
    anchor = models.CharField(max_length=200, blank=True)  # the heading's slug, for #links
    page = models.PositiveIntegerField(null=True, blank=True)
    kind = models.CharField(max_length=8, default="text")  # "text" or "faq"
    token_count = models.PositiveIntegerField(default=0)
    # float32 vector as bytes: the index can always be rebuilt from the database alone.
    embedding = models.BinaryField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["document_id", "ordinal"]
        constraints = [models.UniqueConstraint(fields=["document", "ordinal"], name="unique_chunk_ordinal")]

    def __str__(self) -> str:
        return f"{self.document.title} #{self.ordinal}"
