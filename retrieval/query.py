"""Query handling: split what a question asks about from what it asks to leave out.

"Aaron's profile, but don't mention Moses" asks about Aaron and excludes Moses. Retrieving on
the whole sentence rewards exactly the passages the reader ruled out (both retrievers see
"Moses" as a strong term), so search retrieves on the positive part and demotes passages that
are about the excluded part (see `retrieval.rerank`).

The patterns are English phrasings of exclusion, not rules for particular topics. "without" is
ambiguous: "reset the router without losing settings" describes a manner, not a topic to leave
out, so "without" + a gerund only counts when the gerund is a talking verb ("without mentioning
X"); "without Denmark" counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Verbs that introduce the topic being talked about: "mention X", "focusing on X".
_TALK = (
    r"(?:mention(?:ing|s)?|discuss(?:ing|ion)?|referenc(?:e|es|ing)|refer(?:ring)?\s+to|talk(?:ing)?\s+about"
    r"|focus(?:ing|sing)?\s+on|cover(?:ing)?|includ(?:e|ing)|consider(?:ing)?|bring(?:ing)?\s+up"
    r"|describ(?:e|ing)|address(?:ing)?|touch(?:ing)?\s+(?:on|upon)|deal(?:ing)?\s+with|go(?:ing)?\s+into"
    r"|involv(?:e|ing)|dwell(?:ing)?\s+on)"
)
_ANY = r"(?:(?:any|all)\s+)?"

_GERUND_TALK = (
    r"(?:mentioning|discussing|referencing|referring\s+to|talking\s+about|focusing\s+on|covering|including"
    r"|considering|counting|describing|addressing|touching\s+(?:on|upon)|dealing\s+with|going\s+into"
    r"|involving|dwelling\s+on)"
)

# Each alternative ends right before the excluded span.
_TRIGGER = re.compile(
    r"(?:\bbut\s+)?(?:\bplease\s+)?"
    r"(?:"
    # "don't mention X", "does not include X"
    rf"\b(?:do|does|should|must)\s+not\s+{_TALK}\b|\b(?:don|doesn|shouldn)['’]?t\s+{_TALK}\b"
    rf"|\bnever\s+{_TALK}\b"
    r"|(?<=but\s)(?:do\s+not|don['’]?t)\b"  # "..., but do not X"
    rf"|\bnot\s+{_GERUND_TALK}\b|(?<=but\s)not\b"  # "not including X", "X but not Y"
    rf"|\bavoid(?:ing)?\s+{_ANY}(?:{_TALK}|mentions?)\b(?:\s+(?:of|to|about))?"  # "avoiding any mention of X"
    # A bare "avoid X" is often the topic itself ("how to avoid late fees"): only after a comma/"but".
    r"|(?<=,\s)avoid(?:ing)?\b|(?<=but\s)avoid(?:ing)?\b"
    rf"|\bexclud(?:e|es|ing)\b(?:\s+{_ANY}(?:mentions?|references?|discussions?)\s+(?:of|to|about))?"
    rf"|\bwithout\s+(?:{_ANY}{_TALK}\b|(?!\w+ing\b))"  # "without Denmark", "without discussing X"
    r"|\bother\s+than\b|\boutside\s+of\b|\bbesides\b|\bexcept(?:\s+for)?\b|\baside\s+from\b|\bleaving\s+out\b|\bomitting\b|\bignoring\b"
    r")",
    re.IGNORECASE,
)
# Where an unbracketed excluded span ends: a sentence end, or a clause that starts a new request.
_SPAN_END = re.compile(
    r"[.?!;()]|,\s+(?=(?:and|but|while|whereas|how|what|why|which|then|also|additionally)\b)", re.IGNORECASE
)
# Words that say how to treat the topic, not what it is: "specific details about X" -> "X".
_META_PREFIX = re.compile(
    rf"^(?:{_ANY}(?:(?:the|specific|further|detailed)\s+)*"
    r"(?:details?|information|mentions?|references?|discussions?|descriptions?|info)\s+(?:of|on|about|to|regarding)\s+"
    r"|(?:the\s+)?(?:topic|subject|use)\s+of\s+)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ParsedQuery:
    """`text` as typed; `positive` is what to retrieve on; `excluded` are the aspects to avoid."""

    text: str
    positive: str
    excluded: tuple[str, ...] = field(default=())

    @property
    def has_exclusions(self) -> bool:
        return bool(self.excluded)


def _clean(text: str) -> str:
    text = re.sub(r"\(\s*\)", " ", text)
    text = re.sub(r"\s+([,.?!;:])", r"\1", text)
    text = re.sub(r"[,;:]\s*([.?!])", r"\1", text)
    text = re.sub(r"(?:,\s*)?\b(?:but|and|or|that|which)\s*([.?!]|$)", r"\1", text, flags=re.IGNORECASE)
    return " ".join(text.split()).strip(" ,;:")


def _strip_meta(span: str) -> str:
    span = span.strip(" \t\"'“”‘’,:")
    while (stripped := _META_PREFIX.sub("", span, count=1)) != span:
        span = stripped
    return span.strip(" \t\"'“”‘’,:")


def parse_query(text: str) -> ParsedQuery:
    """Split `text` into the part to retrieve on and the excluded aspects (in order, deduplicated).

    A query with no exclusion phrase comes back with `positive == text` and no exclusions; a
    query that is nothing but an exclusion ("not Moses") keeps its whole text as positive, so
    there is always something to retrieve on.
    """
    text = " ".join(text.split())
    kept: list[str] = []
    excluded: list[str] = []
    pos = 0
    for match in _TRIGGER.finditer(text):
        if match.start() < pos:
            continue  # inside a span already taken
        bracketed = text[: match.start()].rstrip().endswith("(")
        if bracketed:
            close = text.find(")", match.end())
            end = close if close >= 0 else len(text)
        else:
            found = _SPAN_END.search(text, match.end())
            end = found.start() if found else len(text)
        span = _strip_meta(text[match.end() : end])
        if not re.search(r"\w", span):
            continue  # a trigger with nothing after it ("Is it free or not?")
        start = text.rfind("(", 0, match.start()) if bracketed else match.start()
        kept.append(text[pos:start])
        excluded.append(span)
        pos = end + 1 if bracketed and end < len(text) else end
    kept.append(text[pos:])
    positive = _clean(" ".join(kept))
    if not excluded or not re.search(r"\w", positive):
        return ParsedQuery(text=text, positive=text)
    return ParsedQuery(text=text, positive=positive, excluded=tuple(dict.fromkeys(excluded)))
