"""What visitors ask, as vectors, and the daily verdict on whether it has changed
(assistant/insights/drift.py)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from assistant.models.chat import Conversation, Message


class QuestionSample(models.Model):
    """One visitor question's embedding. No copy of the text: the question row holds it, and
    both cascade from the conversation, so erasing a conversation erases its vectors too."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    question = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="drift_sample")
    collection = models.SlugField(max_length=64)
    embedding = models.BinaryField()  # float32, L2-normalised, (dim,)
    embedding_model = models.CharField(max_length=200)  # vectors of two models are not comparable
    created_at = models.DateTimeField(default=timezone.now, db_index=True)  # when it was asked

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Question sample {self.pk} ({self.collection})"


class DriftReport(models.Model):
    """One drift check of one collection: the recent window against the reference before it.
    `score` and `p_value` are null when a window had too few questions to say anything."""

    collection = models.SlugField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    recent_since = models.DateTimeField()
    reference_since = models.DateTimeField()  # the reference window ends at recent_since
    until = models.DateTimeField()
    recent_count = models.PositiveIntegerField()
    reference_count = models.PositiveIntegerField()
    score = models.FloatField(null=True, blank=True)  # cosine distance between window centroids
    p_value = models.FloatField(null=True, blank=True)
    permutations = models.PositiveIntegerField(default=0)
    alert = models.BooleanField(default=False)
    embedding_model = models.CharField(max_length=200, blank=True)
    # The recent questions farthest from the reference centroid, farthest first:
    # [{"sample": id, "question": message id, "conversation": id, "distance": float}].
    farthest = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Drift report {self.pk} ({self.collection}, alert={self.alert})"
