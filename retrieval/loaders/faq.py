"""FAQ lists as CSV or JSON: one `kind="faq"` Block per question/answer pair.

Columns (or object keys) are matched case-insensitively: question/answer, q/a or title/body
(the shape help-centre exports such as Zendesk's use; their bodies are HTML, which is reduced
to text). An optional category/section/topic column becomes the pair's heading.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.utils.text import slugify

from retrieval.errors import IngestError
from retrieval.loaders.base import Block, ParsedDocument, clean_inline, clean_lines, decode_text
from retrieval.loaders.html import fragment_text

KIND = "csv"  # this module loads two kinds; load_json's documents are "json"
SUFFIXES = frozenset({".csv"})
CONTENT_TYPES = frozenset({"text/csv", "application/csv"})
JSON_SUFFIXES = frozenset({".json"})
JSON_CONTENT_TYPES = frozenset({"application/json", "text/json"})

QUESTION_KEYS = ("question", "q", "title")
ANSWER_KEYS = ("answer", "a", "body")
CATEGORY_KEYS = ("category", "section", "topic")
LIST_KEYS = ("faqs", "faq", "items")
_EXPECTED = "question/answer, q/a or title/body"
_TAG = re.compile(r"<[a-zA-Z/!][^>]*>")


def load(data: bytes, name: str) -> ParsedDocument:
    text = decode_text(data, name)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel  # one column or ambiguous: the common case is plain commas
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
        rows = list(reader)
    except csv.Error as exc:
        raise IngestError(f"{name} is not a readable CSV file ({exc})", code="malformed") from exc
    return ParsedDocument(title="", blocks=_pairs(rows, reader.fieldnames or [], name), kind="csv")


def load_json(data: bytes, name: str) -> ParsedDocument:
    try:
        value = json.loads(decode_text(data, name))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise IngestError(f"{name} is not valid JSON ({exc.__class__.__name__})", code="malformed") from exc
    title = ""
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        title = clean_inline(str(lowered.get("title") or ""))
        value = next((lowered[k] for k in LIST_KEYS if isinstance(lowered.get(k), list)), None)
    if not isinstance(value, list):
        raise IngestError(
            f'{name} must be a list of FAQ objects, or an object with a "faqs" or "items" list',
            code="malformed",
        )
    rows = [item for item in value if isinstance(item, dict)]
    keys = list(dict.fromkeys(str(key) for row in rows for key in row))
    return ParsedDocument(title=title, blocks=_pairs(rows, keys, name), kind="json")


def _pairs(rows: Iterable[Mapping[Any, Any]], keys: Sequence[str], name: str) -> list[Block]:
    lowered = {str(key).strip().lower(): key for key in keys if key is not None}
    question = next((lowered[k] for k in QUESTION_KEYS if k in lowered), None)
    answer = next((lowered[k] for k in ANSWER_KEYS if k in lowered), None)
    if question is None or answer is None:
        found = ", ".join(str(k) for k in keys[:10]) or "none"
        raise IngestError(
            f"{name} has no question and answer columns (found: {found}; expected {_EXPECTED})",
            code="malformed",
        )
    category = next((lowered[k] for k in CATEGORY_KEYS if k in lowered), None)
    blocks: list[Block] = []
    for row in rows:
        q = clean_inline(_as_text(row.get(question)))
        a = _as_text(row.get(answer))
        a = fragment_text(a) if _TAG.search(a) else clean_lines(a)
        if not q or not a:
            continue  # a half-filled row (or a spreadsheet's trailing blank lines) answers nothing
        heading = clean_inline(_as_text(row.get(category))) if category is not None else ""
        blocks.append(
            Block(
                text=f"Q: {q}\nA: {a}",
                headings=(heading,) if heading else (),
                kind="faq",
                anchor=slugify(heading),
            )
        )
    return blocks


def _as_text(value: Any) -> str:
    # JSON values can be numbers or nested structures; CSV short rows give None.
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
