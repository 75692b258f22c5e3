"""Language of a document's text, with py3langid: offline (its model ships in the package),
deterministic (naive Bayes, no sampling, unlike langdetect) and fast enough for whole documents.
"""

from __future__ import annotations

import functools
import re

from py3langid.langid import MODEL_FILE, LanguageIdentifier

SAMPLE_CHARS = 20_000  # enough for a stable answer; classifying a whole book adds nothing
MIN_LETTERS = 20  # below this ("Hello", a table of numbers) any answer is a guess
MIN_CONFIDENCE = 0.5
_LETTER = re.compile(r"[^\W\d_]")


@functools.cache
def _identifier() -> LanguageIdentifier:
    # Loading the model takes most of a second: once per process, on first use.
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> str:
    """ISO 639-1 code of the text's language, or "" when too short or not confident."""
    sample = text[:SAMPLE_CHARS]
    if len(_LETTER.findall(sample)) < MIN_LETTERS:
        return ""
    language, confidence = _identifier().classify(sample)
    # The model also answers in a few three-letter codes (and "und"); the field holds ISO 639-1.
    return language if confidence >= MIN_CONFIDENCE and len(language) == 2 else ""


def classify_language(text: str) -> tuple[str, float]:
    """(code, probability) for a short text such as an email, with no floor: callers that show
    the confidence (the email desk's triage) decide what is too unsure."""
    language, confidence = _identifier().classify(text[:SAMPLE_CHARS])
    return str(language), float(confidence)
