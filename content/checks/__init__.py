"""SEO and quality checks for the content studio's articles.

Pure functions over an article's fields (no database, no models): the studio runs `run_checks`
after generation and after every edit. A failing check marked `blocking` blocks approval until
an editor overrides it with a reason.

The checks are the ones writers know from Yoast SEO and Rank Math, with their published
thresholds as defaults. "Yoast" in these modules means Yoast's scoring tables, `SCORING SEO.md` and
`SCORING READABILITY.md` in Yoast/wordpress-seo (packages/yoastseo/src/scoring/assessments/):
their red maps to "fail" here, their orange to "warn".

The Markdown body is read with markdown-it-py's CommonMark parser with raw HTML disabled, so a
`<script>` tag is literal text to the checks, as it should be to the renderer. Word counts and
the Flesch score come from textstat; sentences are split with NLTK's Punkt tokenizer.

`run_checks` is here; config.py holds the ids, labels, thresholds and results, reading.py the
article as the checks read it, seo.py, readability.py and structure.py the checks, and
dictionary.py the offline CMU dictionary textstat's English syllable counts need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from content.checks.config import (
    CHECK_IDS,
    LABELS,
    READABILITY_LANGUAGES,
    CheckConfig,
    CheckResult,
    SimilarFn,
    Status,
    Value,
    summary,
)
from content.checks.facts import facts
from content.checks.readability import readability
from content.checks.reading import Article, Report
from content.checks.self_talk import self_talk
from content.checks.seo import keyphrase_checks, length_checks
from content.checks.structure import near_duplicate, structure

__all__ = [
    "CHECK_IDS",
    "LABELS",
    "READABILITY_LANGUAGES",
    "CheckConfig",
    "CheckResult",
    "SimilarFn",
    "Status",
    "Value",
    "run_checks",
    "summary",
]


def run_checks(
    fields: Mapping[str, Any],
    keyphrase: str,
    language: str,
    *,
    config: CheckConfig | None = None,
    existing_pages: Sequence[tuple[str, str]] = (),
    similar: SimilarFn | None = None,
    support: Sequence[Mapping[str, Any]] | None = None,
) -> list[CheckResult]:
    """All checks, in `CHECK_IDS` order.

    `fields` holds title, meta_title, meta_description, slug, body (Markdown), faq and images
    ([{"alt", "prompt"}]); missing or empty fields give failing checks, never exceptions. Of
    the FAQ only the answers are read, for self-talk. `existing_pages` are (title, url) of the
    site's pages, for the internal-link check. `similar(text)` returns (title, cosine
    similarity) of the closest existing content; it costs one embedding and one index search
    per call. Without it, the near-duplicate check warns "not checked" (a pass would claim
    what nobody verified). Its errors propagate. `support` is the article's fact check
    (answers/support.py's records, see facts.py); without it the facts check warns "not
    checked" too.
    """
    article = Article.read(fields, language)
    report = Report(config or CheckConfig())
    keyphrase_checks(article, keyphrase or "", report)
    length_checks(article, report)
    readability(article, report)
    structure(article, existing_pages, report)
    near_duplicate(article, similar, report)
    facts(support, report)
    self_talk(article, fields.get("faq"), report)
    return report.results
