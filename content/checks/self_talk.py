"""Text that talks about itself or the task instead of the topic: "The article will feature…",
"Here is the section:", "In this article we will…", "As an AI…", "Sure, here…", "I hope this
helps". A small model frames its output like a chat reply; a reader of the published article
must never see the frame.

`self_talk_sentences` finds such sentences (the "self_talk" check fails on any), and
`strip_self_talk` removes them from what the model wrote (content/generation.py).

The patterns describe kinds of framing, not the one-off strings we saw: the text naming itself
with a word of the writing task (article, section, paragraph, introduction…) and what it will
do; presenting output ("here is the…:"); the model speaking of itself (as an AI, language
model); chat courtesies (I hope this helps, let me know if…); and the brief or instructions
themselves (the keyphrase, as requested, in about 200 words). English only: the chat model
writes English framing even under a brief in another language.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from content.checks.reading import Article, Report

# Words of the writing task by which a text names itself. Not "guide": published guides name
# themselves that way ("This guide shows new runners what to look for") and readers expect it.
_SELF = (
    r"(?:article|blog\s+post|section|paragraph|introduction|intro|essay|faq|meta\s+description|"
    r"outline|sub-?heading)"
)
# Words that name a text only after "this", "my" or "the following": "the post will arrive" and
# "the text will appear on screen" are support-article sentences.
_OWN = r"(?:text|post|piece|response|reply|output|content|summary|draft|answer|version)"
_POINTER = r"(?:this|the|my|our|following|above|below|next)"
_OWN_POINTER = r"(?:this|my|the\s+following|the\s+above|the\s+below)"
_PLANS = (
    r"(?:will|'ll|is\s+going\s+to|are\s+going\s+to|shall|would|aims?\s+to|seeks?\s+to|"
    r"(?:is|are)\s+(?:about|meant|written|designed|intended))"
)
_WRITING = r"(?:write|draft|rewrite|compose|create|generate|produce)"

_PATTERNS = [
    # The text naming itself and what it will do: "The article will feature…", "This section
    # is going to…", "The introduction aims to…", "This text will…".
    rf"\b{_POINTER}\s+(?:\w+\s+){{0,2}}{_SELF}s?\s+{_PLANS}\b",
    rf"\b{_OWN_POINTER}\s+(?:\w+\s+){{0,2}}{_OWN}s?\s+{_PLANS}\b",
    # "In this article(,) we will / you'll learn / I…", "In the following section…".
    rf"\bin\s+{_POINTER}\s+(?:\w+\s+){{0,2}}{_SELF}s?\b,?\s+(?:we|i|you|let's|let\s+us)\b",
    rf"\bin\s+{_OWN_POINTER}\s+(?:\w+\s+){{0,2}}{_OWN}s?\b,?\s+(?:we|i|you|let's|let\s+us)\b",
    # Presenting output: "Here is the section:", "Here's a two-sentence introduction", "Below is
    # my answer".
    rf"\b(?:here|below)(?:'s|\s+is|\s+are)\s+(?:[\w-]+\s+){{0,4}}{_SELF}s?\b",
    rf"\b(?:here|below)(?:'s|\s+is|\s+are)\s+(?:my|the|a|an|your)\s+(?:\w+\s+){{0,2}}{_OWN}s?\s*(?::|$)",
    # Chat openers: "Sure, here…", "Certainly! …", "Okay, I will…".
    r"^\W*(?:sure|certainly|okay|ok|great\s+question)\b\s*[,!.:\-–—]",
    # The model about itself.
    r"\bas\s+an?\s+(?:ai|a\.i\.|artificial\s+intelligence|(?:ai\s+)?language\s+model|llm|"
    r"(?:ai|virtual)\s+assistant|chatbot|content\s+writer)\b",
    r"\bi(?:'m|\s+am)\s+(?:an?\s+|just\s+an?\s+)?(?:ai|language\s+model|chatbot|assistant|bot)\b",
    # First person about writing: "I will now write…", "Let me draft…", "I have written…".
    rf"\b(?:i|let\s+me|i\s+will|i'll|i\s+have|i've|i'm\s+going\s+to|i\s+am\s+going\s+to)\s+"
    rf"(?:now\s+)?(?:{_WRITING}|written|drafted|created|rewritten)\b",
    # Chat courtesies.
    r"\bi\s+hope\s+(?:this|that|these|it|the\s+above)\b",
    r"\b(?:let\s+me\s+know|feel\s+free\s+to\s+ask)\b",
    r"\b(?:is|was)\s+there\s+anything\s+else\b",
    # The brief and the instructions (not "follow the instructions on screen").
    r"\b(?:my|these|your|the\s+given|the\s+above)\s+(?:instructions|prompt|brief|task)\b",
    r"\bthe\s+(?:brief|keyphrase)\b",
    r"\bas\s+(?:requested|instructed|you\s+asked)\b",
    r"\b(?:in\s+)?(?:about|around|approximately|under|exactly)\s+\d+\s+(?:words|characters)\b",
    r"\bword\s+count\b",
]
SELF_TALK = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE)

# A label or lead-in ending in a colon that only presents what follows ("Here is the section:",
# "Introduction:", "Answer 2:"): removed, and what follows kept.
_LEAD_IN = re.compile(
    rf"^\s*(?:(?:sure|certainly|of\s+course|okay|ok)\W+)?"
    rf"(?:(?:here|below)(?:'s|\s+is|\s+are)\s+(?:[\w-]+\s+){{0,4}}(?:{_SELF}|{_OWN}|question|heading|title)s?\b"
    rf"[^:\n]{{0,60}}|"
    rf"(?:{_SELF}|answer|question|title)\s*\d*)\s*:\s*",
    re.IGNORECASE,
)
# Sentences end at . ! ? … (and closing quotes or brackets) followed by a space; lines are
# handled one at a time, so paragraphs and list items keep their layout.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")


def _sentences(line: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(line) if s.strip()]


def _is_self_talk(sentence: str) -> bool:
    return bool(SELF_TALK.search(sentence.replace("’", "'")))


def self_talk_sentences(text: str) -> list[str]:
    """The sentences of `text` that talk about the text itself, the task or the model."""
    found = []
    for line in text.splitlines():
        lead = _LEAD_IN.match(line)
        if lead:
            found.append(lead.group().strip())
            line = line[lead.end() :]
        found += [s.strip() for s in _sentences(line) if _is_self_talk(s)]
    return found


def strip_self_talk(text: str) -> str:
    """`text` without its self-talk: lead-ins and labels removed (what they present kept),
    sentences about the text, the task or the model dropped, lines left empty removed."""
    lines = []
    for line in text.splitlines():
        lead = _LEAD_IN.match(line)
        if lead:
            line = line[lead.end() :]
            if not line.strip():
                continue
        kept = [s.strip() for s in _sentences(line) if not _is_self_talk(s)]
        if not line.strip():
            lines.append("")  # a paragraph break
        elif kept:
            indent = line[: len(line) - len(line.lstrip())]
            lines.append(indent + " ".join(kept))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _quote(sentence: str, most: int = 80) -> str:
    return sentence if len(sentence) <= most else sentence[: most - 1].rstrip() + "…"


def self_talk(article: Article, faq: Iterable[Mapping[str, Any]] | None, report: Report) -> None:
    """Fails when the body's paragraphs, the meta description or an FAQ answer talk about the
    article, the instructions or the model; the reason quotes the first such sentence."""
    texts = [*article.doc.paragraphs, article.meta_description]
    texts += [str((pair or {}).get("answer") or "") for pair in faq or [] if isinstance(pair, Mapping)]
    found = [sentence for text in texts for sentence in self_talk_sentences(text)]
    if not found:
        report.add("self_talk", "pass", "The text talks about its topic, not about itself.", 0)
        return
    count = len(found)
    reason = (
        f"{count} sentence{'s' if count != 1 else ''} talk{'s' if count == 1 else ''} about the "
        f"article, the instructions or the model, e.g. “{_quote(found[0])}”; remove "
        f"{'them' if count != 1 else 'it'} or regenerate the part."
    )
    report.add("self_talk", "fail", reason, count)
