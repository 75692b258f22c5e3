"""The content studio: a brief, the item generated from it (an article with its meta tags, FAQ and
images), every revision of it, comments, state changes, image jobs, requests to regenerate one
part and deliveries to the CMS.

An item's state is a state machine (django-fsm-2): draft → in review → changes requested →
approved → published, moved only by content/review.py's `move`, which records who, when and why.
Its fields are edited only through content/review.py's `save_fields`, which checks the revision
the editor started from (two editors never silently overwrite each other) and keeps a Revision.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import URLValidator
from django.db import models
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from core.transitions import DecisionRecord
from inference.models import ModelVersion

# The fields an item's text is made of; a Revision snapshots exactly these.
TEXT_FIELDS = ("title", "meta_title", "meta_description", "slug", "intro", "sections", "faq", "image_prompts")


def default_site_name() -> str:
    return settings.CONTENT_SITE_NAME


class StudioSettings(models.Model):
    """The studio's workspace: the site its articles are published on. One row (pk=1), kept by
    admins in the Django admin, read with `StudioSettings.current()`; until an admin saves it, the
    deployment's CONTENT_SITE_NAME holds. New meta titles end in " | <site name>"; items already
    written keep theirs."""

    site_name = models.CharField(
        max_length=100,
        blank=True,
        default=default_site_name,
        help_text='Ends the meta titles the studio writes ("… | Site name"). Empty: no suffix. '
        "Articles already written keep their titles.",
    )
    site_url = models.URLField(
        max_length=200,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="Where articles are published, e.g. https://www.example.com/blog/: the "
        "search-result preview shows each article's address under it.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "studio settings"
        verbose_name_plural = "studio settings"

    def __str__(self) -> str:
        return "Studio settings"

    @classmethod
    def current(cls) -> StudioSettings:
        # A read, not get_or_create: showing a page or writing an article must not write the row.
        return cls.objects.filter(pk=1).first() or cls(pk=1)


class Brief(models.Model):
    class Length(models.TextChoices):
        SHORT = "short"  # ~400 words
        MEDIUM = "medium"  # ~800 words
        LONG = "long"  # ~1,400 words

    topic = models.CharField(max_length=200)
    keyphrase = models.CharField(max_length=100)
    audience = models.CharField(max_length=200, blank=True)
    tone = models.CharField(max_length=50, blank=True)
    language = models.CharField(max_length=8, default="en")
    length = models.CharField(max_length=8, choices=Length.choices, default=Length.MEDIUM)
    style_guide = models.TextField(blank=True)
    collection = models.CharField(max_length=64, default="default")
    references = models.ManyToManyField("retrieval.Document", blank=True)
    with_images = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.topic


class ContentItem(ConcurrentTransitionMixin, models.Model):
    class State(models.TextChoices):
        DRAFT = "draft"
        IN_REVIEW = "in_review"
        CHANGES_REQUESTED = "changes_requested"
        APPROVED = "approved"
        PUBLISHED = "published"

    class Generation(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    brief = models.OneToOneField(Brief, on_delete=models.CASCADE, related_name="item")
    state = FSMField(max_length=20, choices=State.choices, default=State.DRAFT, protected=False)
    # Generation progress (the Celery task updates these and tells the studio page live).
    generation = models.CharField(max_length=8, choices=Generation.choices, default=Generation.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    step = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    # The text.
    title = models.CharField(max_length=300, blank=True)
    meta_title = models.CharField(max_length=300, blank=True)
    meta_description = models.CharField(max_length=500, blank=True)
    slug = models.SlugField(max_length=200, blank=True, allow_unicode=True)
    intro = models.TextField(blank=True)
    sections = models.JSONField(default=list, blank=True)  # [{"id": "s1", "heading": ..., "text": ...}]
    faq = models.JSONField(default=list, blank=True)  # [{"question": ..., "answer": ...}]
    image_prompts = models.JSONField(
        default=list, blank=True
    )  # [{"prompt", "negative_prompt", "alt", "size"}]
    revision = models.PositiveIntegerField(default=0)  # bumped by every save of the text
    # Quality: the latest check results, and editors' written overrides of failing checks.
    checks = models.JSONField(default=list, blank=True)
    overrides = models.JSONField(default=dict, blank=True)  # {check_id: {"reason", "user", "at"}}
    # Provenance of what the model wrote.
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT)
    prompt_template = models.CharField(max_length=32, blank=True)
    retrieved = models.JSONField(default=list, blank=True)  # [{chunk, score, document, title}]
    # The fact check: each factual claim of the text with its supporting source passage or
    # "unsupported" (answers/support.py records, plus the part of the article it is in).
    support = models.JSONField(default=list, blank=True)
    # Workflow.
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="content_items",
    )
    due_date = models.DateField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return self.title or self.brief.topic

    @transition(field=state, source=[State.DRAFT, State.CHANGES_REQUESTED], target=State.IN_REVIEW)
    def submit(self) -> None:
        pass

    @transition(field=state, source=State.IN_REVIEW, target=State.CHANGES_REQUESTED)
    def request_changes(self) -> None:
        pass

    @transition(field=state, source=State.IN_REVIEW, target=State.APPROVED)
    def approve(self) -> None:
        pass

    @transition(field=state, source=State.APPROVED, target=State.PUBLISHED)
    def publish(self) -> None:
        self.published_at = timezone.now()

    # An edit after approval (or publication) needs a new approval.
    @transition(field=state, source=[State.APPROVED, State.PUBLISHED], target=State.IN_REVIEW)
    def edited_after_approval(self) -> None:
        self.approved_by, self.approved_at = None, None


class Revision(models.Model):
    """The item's text as it was after one save: by the model (author empty) or an editor."""

    item = models.ForeignKey(ContentItem, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    fields = models.JSONField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["item", "number"]
        constraints = [models.UniqueConstraint(fields=["item", "number"], name="one_revision_per_number")]

    def __str__(self) -> str:
        return f"{self.item_id} r{self.number}"


class Comment(models.Model):
    """An editor's comment, anchored to a section (its id) or a field name."""

    item = models.ForeignKey(ContentItem, on_delete=models.CASCADE, related_name="comments")
    anchor = models.CharField(max_length=64)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    text = models.TextField()
    resolved = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.item_id} {self.anchor}: {self.text[:40]}"


class StateChange(DecisionRecord):
    item = models.ForeignKey(ContentItem, on_delete=models.CASCADE, related_name="state_changes")
    from_state = models.CharField(max_length=20)
    to_state = models.CharField(max_length=20)

    class Meta(DecisionRecord.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.item_id} {self.action}"


class Regeneration(models.Model):
    """An editor's request to rewrite one part of an item with the model, run by the
    `content.regenerate_part` task (content/regeneration.py): how far it got and what came of
    it, which the item's page shows."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    item = models.ForeignKey(ContentItem, on_delete=models.CASCADE, related_name="regenerations")
    part = models.CharField(max_length=64)  # "intro", "meta_description", "faq" or a section id
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revision = models.PositiveIntegerField(null=True, blank=True)  # the revision it saved, if any
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]  # an item's latest first

    def __str__(self) -> str:
        return f"{self.item_id} {self.part} ({self.status})"


class ContentImage(models.Model):
    """One image candidate for one of the item's image prompts."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    item = models.ForeignKey(ContentItem, on_delete=models.CASCADE, related_name="images")
    slot = models.PositiveSmallIntegerField()  # index into item.image_prompts
    prompt = models.TextField()
    negative_prompt = models.TextField(blank=True)
    alt = models.CharField(max_length=300, blank=True)
    seed = models.BigIntegerField()
    steps = models.PositiveSmallIntegerField(null=True, blank=True)
    guidance = models.FloatField(null=True, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    path = models.CharField(max_length=300, blank=True)  # relative to DATA_DIR
    model_version = models.CharField(max_length=200, blank=True)
    meaningful = models.BooleanField(default=True)  # False: the built-in offline pipeline
    chosen = models.BooleanField(default=False)
    rejected = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["item", "slot", "id"]

    def __str__(self) -> str:
        return f"{self.item_id} image {self.slot} ({self.status})"


class WebhookDelivery(models.Model):
    """One post of a published item to the CMS webhook: its log and retry state. The body is
    fixed when the item is published, so every attempt sends the same bytes and signature base."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        RETRY = "retry"
        DELIVERED = "delivered"
        FAILED = "failed"

    item = models.ForeignKey(ContentItem, on_delete=models.CASCADE, related_name="deliveries")
    url = models.URLField(max_length=1000)
    event = models.CharField(max_length=32, default="item.published")
    body = models.TextField()  # the JSON posted
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    log = models.JSONField(default=list, blank=True)  # [{at, status_code, error, seconds}]
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.item_id} → {self.url} ({self.status})"
