"""The checks' ids, labels and thresholds (CheckConfig, with `settings.CONTENT_CHECKS` over the
defaults) and what a check returns (CheckResult). "Yoast" below means Yoast's scoring tables
(see content/checks/__init__.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Status = Literal["pass", "warn", "fail"]
Value = float | int | bool | None  # what a check measured; None when nothing could be
SimilarFn = Callable[[str], list[tuple[str, float]]]

LABELS: dict[str, str] = {
    "keyphrase_in_seo_title": "Keyphrase in SEO title",
    "keyphrase_in_introduction": "Keyphrase in introduction",
    "keyphrase_in_slug": "Keyphrase in slug",
    "keyphrase_in_subheadings": "Keyphrase in subheadings",
    "keyphrase_in_meta_description": "Keyphrase in meta description",
    "keyphrase_in_image_alt": "Keyphrase in image alt text",
    "keyphrase_density": "Keyphrase density",
    "meta_description_length": "Meta description length",
    "seo_title_length": "SEO title length",
    "text_length": "Text length",
    "flesch_reading_ease": "Flesch reading ease",
    "sentence_length": "Sentence length",
    "paragraph_length": "Paragraph length",
    "single_h1": "Single H1",
    "heading_order": "Heading order",
    "image_alt_text": "Image alt text",
    "internal_links": "Internal links",
    "near_duplicate": "Near-duplicate content",
    "facts": "Claims supported by the sources",
    "self_talk": "Talks about itself",
}
CHECK_IDS = tuple(LABELS)

# textstat 0.7.13 has Flesch coefficients of its own only for these languages (Amstad for German,
# Fernandez Huerta for Spanish, ...); any other language silently gets the English formula, a
# score that means nothing, so we don't report one.
READABILITY_LANGUAGES = frozenset({"en", "de", "es", "fr", "it", "nl", "ru", "hu"})


@dataclass(frozen=True)
class CheckConfig:
    """Thresholds; `from_settings()` applies `settings.CONTENT_CHECKS` overrides."""

    # Yoast "Keyphrase density", free version: green for 0.5 % < density <= 3 %. Both ends pass here.
    density_min_pct: float = 0.5
    density_max_pct: float = 3.0
    # Yoast "Meta description length": orange at <= 120 and at >= 157 characters.
    meta_description_min_chars: int = 120
    meta_description_max_chars: int = 156
    # Yoast measures the SEO title in pixels (red over 600 px); 60 characters is the character
    # limit SEO tools commonly use for the same cut-off.
    seo_title_max_chars: int = 60
    # Yoast "Text length": green from 300 words.
    min_words: int = 300
    # Yoast "Flesch reading ease": green above 60, orange 50-60, red below 50.
    flesch_pass_above: float = 60.0
    flesch_fail_below: float = 50.0
    # Yoast "Sentence length": long means over 20 words; green while <= 25 % of sentences are
    # long, orange up to 30 %, red above.
    long_sentence_words: int = 20
    long_sentences_warn_pct: float = 25.0
    long_sentences_fail_pct: float = 30.0
    # Yoast "Paragraph length": green up to 150 words, orange 150-200, red above 200.
    paragraph_warn_words: int = 150
    paragraph_fail_words: int = 200
    # Ours (neither plugin has one): cosine similarity between the article's embedding and the
    # closest existing content.
    duplicate_warn_similarity: float = 0.85
    duplicate_fail_similarity: float = 0.92
    # The failures an editor must override with a written reason before approving: all of them
    # (the studio's rule). A team can make some advisory, e.g.
    # CONTENT_CHECKS = {"blocking": ["near_duplicate", "image_alt_text", "single_h1"]}.
    blocking: frozenset[str] = frozenset(CHECK_IDS)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "blocking" and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"{f.name} must be a number, not {value!r}")
        pairs = [
            ("density_min_pct", "density_max_pct"),
            ("meta_description_min_chars", "meta_description_max_chars"),
            ("flesch_fail_below", "flesch_pass_above"),
            ("long_sentences_warn_pct", "long_sentences_fail_pct"),
            ("paragraph_warn_words", "paragraph_fail_words"),
            ("duplicate_warn_similarity", "duplicate_fail_similarity"),
        ]
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} must not be greater than {high}")
        unknown = set(self.blocking) - set(CHECK_IDS)
        if unknown:
            raise ValueError(f"blocking names unknown checks: {', '.join(sorted(unknown))}")

    @classmethod
    def from_settings(cls) -> CheckConfig:
        """The defaults with `settings.CONTENT_CHECKS` (an optional dict) applied over them."""
        overrides = dict(getattr(settings, "CONTENT_CHECKS", None) or {})
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ImproperlyConfigured(f"CONTENT_CHECKS has unknown keys: {', '.join(sorted(unknown))}")
        if "blocking" in overrides:
            overrides["blocking"] = frozenset(overrides["blocking"])
        try:
            return cls(**overrides)
        except ValueError as exc:
            raise ImproperlyConfigured(f"CONTENT_CHECKS: {exc}") from exc


@dataclass(frozen=True)
class CheckResult:
    id: str
    label: str
    status: Status
    reason: str
    value: Value
    blocking: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def summary(results: Sequence[CheckResult]) -> dict[str, Any]:
    """Counts per status and the ids of failing blocking checks (which hold up approval)."""
    counts = {status: sum(r.status == status for r in results) for status in ("pass", "warn", "fail")}
    return {
        **counts,
        "total": len(results),
        "blocking_failures": [r.id for r in results if r.blocking and r.status == "fail"],
    }
