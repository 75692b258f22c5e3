"""Answers end when they are done: no loops, no sentence cut off at the token cap.

A small model left to run repeats itself ("tablets running on tablets running on …") until the
cap, then stops mid-word. `repeats` spots the loop as it starts (a run of `n` words said again),
so the answer path can stop the model there; `tidy` gives the text up to its last whole
sentence before the loop or the cut.
"""

from __future__ import annotations

import re

_WORDS = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"[.!?…](?:[\"'”’)\]]*)(?:\s*\[\d+(?:\s*[,\-–]\s*\d+)*\])?")

# Five words said twice is a loop, not style: a reply never needs to repeat a five-word run
# ("you can return it within" twice is already one too many), while four-word runs recur
# naturally ("in the case of").
REPEAT_WORDS = 5


def _first_repeat(text: str, n: int = REPEAT_WORDS) -> int | None:
    """Where the second occurrence of the first repeated `n`-word run starts, or None."""
    words = [(m.group().lower(), m.start()) for m in _WORDS.finditer(text)]
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - n + 1):
        gram = tuple(w for w, _ in words[i : i + n])
        if gram in seen:
            return words[i][1]
        seen.add(gram)
    return None


def repeats(text: str) -> bool:
    """Whether `text` has started to loop."""
    return _first_repeat(text) is not None


def ends_sentence(text: str) -> bool:
    """Whether `text` ends at the end of a sentence (its closing quote or citation mark after it
    included): what is left after a cut at the cap is a fragment otherwise."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return bool(ends) and not text[ends[-1] :].strip()


def tidy(text: str, *, cut: bool) -> str:
    """`text` up to the loop (if any) and, when it was `cut` (the cap, a loop), up to its last
    whole sentence; unchanged when it has no whole sentence to fall back to."""
    loop = _first_repeat(text)
    if loop is not None:
        text, cut = text[:loop], True
    if not cut:
        return text.strip()
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return (text[: ends[-1]] if ends else text).strip()
