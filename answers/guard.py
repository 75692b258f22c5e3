"""Defences around the model for prompt injection (OWASP LLM01, LLM02, LLM07), in depth: the
prompt tells the model that sources and the visitor's words are data, but a 135M model (or any
model) cannot be trusted to obey, so what goes in and what comes out are checked too.

- In: retrieved passages that carry instructions aimed at the model ("ignore previous
  instructions", "you are now", "reply only with", in English, German, French, Spanish, Dutch
  and Italian, and common paraphrases) are left out of the prompt and recorded. The screen reads
  a normalised copy of the text (`screen_forms`): compatibility forms folded (NFKD: full-width
  and mathematical letters, ligatures), accents and other combining marks, zero-width and other
  invisible characters removed, Cyrillic and Greek look-alikes mapped to the Latin letters they
  imitate, whitespace runs collapsed to one space (so no pattern can backtrack over a long run),
  and text longer than SCREEN_MAX_CHARS is refused unread.
- Out, while streaming: Markdown images are removed (an `![](https://attacker/?q=...)` would make
  a renderer fetch the URL with the conversation in it); links and bare URLs the sources do not
  contain lose their URL (a Markdown link keeps its text), so the model cannot be talked into
  sending a visitor anywhere; and an answer that starts reciting the instructions is cut off.

Paraphrase is screened with the patterns below, not with the embedder: over 646 sentences of
the demo knowledge base and the desk's mail set, all-MiniLM-L6-v2's best cosine to twelve
canonical injections ranged up to 0.59 ("If the setup wizard asks, choose the recommended
settings.") while ten paraphrased injections scored 0.31 to 0.56, and a contrast with benign
instructions overlapped as well: no threshold separates them.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

from retrieval.search import Hit

if TYPE_CHECKING:
    from answers.prompts import Source

# A chunk is a few hundred words and a mail that fits a prompt a few thousand: text longer than
# this cannot be meant for the model as it stands, and is treated as carrying instructions
# (a passage is left out, a mail flagged for a person) rather than screened at any length.
SCREEN_MAX_CHARS = 200_000

# Cyrillic and Greek letters drawn like Latin ones (Unicode's confusables for the letters the
# patterns use), as they are after NFKD (accents already split off); lower and upper case.
_CONFUSABLES = str.maketrans(
    {
        **dict.fromkeys("аАαΑ", "a"),
        **dict.fromkeys("вВβΒ", "b"),
        **dict.fromkeys("сСϲ", "c"),
        **dict.fromkeys("ԁ", "d"),
        **dict.fromkeys("еЕεΕ", "e"),
        **dict.fromkeys("ɡ", "g"),
        **dict.fromkeys("һНΗ", "h"),
        **dict.fromkeys("іІιΙıɩ", "i"),
        **dict.fromkeys("јЈϳ", "j"),
        **dict.fromkeys("кКκΚ", "k"),
        **dict.fromkeys("ӏℓ", "l"),
        **dict.fromkeys("мМΜ", "m"),
        **dict.fromkeys("ΝпП", "n"),
        **dict.fromkeys("оОοΟσ", "o"),
        **dict.fromkeys("рРρΡ", "p"),
        **dict.fromkeys("ԛ", "q"),
        **dict.fromkeys("ѕЅ", "s"),
        **dict.fromkeys("тТτΤ", "t"),
        **dict.fromkeys("υ", "u"),
        **dict.fromkeys("νѵ", "v"),
        **dict.fromkeys("ԝѡω", "w"),
        **dict.fromkeys("хХχΧ", "x"),
        **dict.fromkeys("уУγΥ", "y"),
        **dict.fromkeys("Ζ", "z"),
    }
)
# Invisible characters that are not of category Cf (format): fillers drawn as blanks.
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f")
_WHITESPACE = re.compile(r"\s+")


@functools.lru_cache(maxsize=8192)
def _fold(char: str, invisible: str) -> str:
    """One character of NFKD text as the screen reads it: `invisible` for format characters
    (zero-width spaces and joiners, soft hyphens, bidi controls, tags) and blank fillers, ""
    for combining marks (accents, and marks sprinkled over letters), look-alikes as Latin."""
    category = unicodedata.category(char)
    if category == "Cf" or char in _BLANKS:
        return invisible
    if category in ("Mn", "Me"):
        return ""
    return char.translate(_CONFUSABLES)


def screen_forms(text: str) -> list[str]:
    """The normalised copies of `text` the screen reads (lower case, single spaces): invisible
    characters removed ("ig\\u200bnore" is "ignore"), and where there are any, also read as
    spaces ("ignore\\u200ball" is "ignore all")."""
    if text.isascii():
        forms = [text]
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        joined = "".join(_fold(c, "") for c in decomposed)
        spaced = "".join(_fold(c, " ") for c in decomposed)
        forms = [joined] if joined == spaced else [joined, spaced]
    return [_WHITESPACE.sub(" ", form).casefold() for form in forms]


# On screen_forms() text: lower case, no accents, single spaces. Each line one idea; the
# languages the widget speaks (en, de, fr) and those customers write in (es, nl, it).
_OVERRIDE_VERBS = (
    r"ignore|disregard|forget|override|bypass|pay no attention to|set aside|drop|discard|abandon"
    r"|stop following|stop obeying|no longer follow|throw out"
)
_CONFIG_NOUNS = (
    r"instructions?|directions|guidance|guidelines|rules|orders|setup|configuration|programming"
    r"|prompts?|constraints|restrictions|system message"
)
_CONFIG = (
    r"(?:your|all|any|the) (?:previous|prior|earlier|original|initial|above|preceding|old) "
    rf"(?:{_CONFIG_NOUNS})"
    rf"|your (?:{_CONFIG_NOUNS})|(?:{_CONFIG_NOUNS}) you (?:were|have been|got) given"
    r"|what you (?:were|have been|'ve been) told"
)
_MAKERS = r"developers?|creators?|programmers?|operators?|makers|trainers"
INJECTION = re.compile(
    "|".join(
        [
            # English
            r"\b(?:ignore|disregard|forget|override)\b.{0,40}"
            r"\b(?:instructions?|prompt|rules|the above|everything)\b",
            r"\byou are now\b|\bnew instructions?\b|\bsystem prompt\b|\b(?:reply|respond|answer) only with\b",
            r"\bdo not (?:tell|mention to) the (?:user|customer)\b|< ?/? ?(?:system|instructions?) ?>",
            # English paraphrase: set aside the model's configuration, or declare it void
            rf"\b(?:{_OVERRIDE_VERBS})\b.{{0,40}}?\b(?:{_CONFIG})\b",
            r"\b(?:your|the) (?:rules|instructions|guidelines|directions|orders|programming)\b"
            r"(?: you (?:got|received|were given)\b.{0,40})? (?:are|is) (?:now )?"
            r"(?:void|cancell?ed|canceled|revoked|no longer valid)\b",
            rf"\byour (?:{_MAKERS})\b.{{0,30}}\b(?:said|told|gave|wrote|instructed|set)\b",
            # ... a new role for the model
            r"\bact as (?:an? )?(?:unrestricted|unfiltered|uncensored|jailbroken|different|new|evil|rogue)\b",
            r"\byour (?:new|real|actual|true|only) "
            r"(?:task|role|job|goal|purpose|mission|instructions?|objective)\b",
            r"\bfrom now on,? (?:act|respond|reply|answer)\b|\b(?:pretend|imagine) (?:that )?you are\b",
            r"\bjailbr[eo]ak|\b(?:dan|developer) mode\b",
            # ... asking for the instructions
            r"\b(?:show|reveal|print|repeat|recite|output|display|tell me|give me|share|write out|leak)\b"
            r".{0,40}\b(?:your "
            r"(?:hidden |secret |initial |original |system |exact |full |complete |real |internal )?"
            r"(?:instructions|prompt|guidelines|system message)"
            r"|the (?:hidden|secret|initial|original|system) (?:instructions|prompt)"
            rf"|instructions (?:your (?:{_MAKERS})|you were given))\b",
            # ... talking to the model about the reader
            r"\b(?:ai|assistant|chatbot|llm|language model|ai model)s? "
            r"(?:reading|processing|summari[sz]ing|parsing) this\b",
            r"\bnote to (?:the |any )?(?:ai|assistant|chatbot|llm|language model|ai model)\b",
            r"\b(?:the|any|an?) (?:ai|assistant|chatbot|language model|llm|ai model)\b.{0,50}"
            r"\b(?:must|should|shall|has to|needs to|is to|is required to) (?:also |always |now )?"
            r"(?:tell|inform|ask|direct|send|remind|redirect) (?:the |every |all |each )?"
            r"(?:users?|customers?|visitors?|readers?)\b",
            # German
            r"\b(?:ignorier\w*|vergiss|vergessen sie|missachte\w*|uberspring\w*)\b.{0,50}"
            r"\b(?:anweisung\w*|instruktion\w*|regeln|vorgaben|richtlinien|befehle"
            r"|alles (?:obige|vorherige|bisherige))\b",
            r"\b(?:du bist|sie sind|ihr seid) (?:jetzt|nun|ab sofort|ab jetzt) "
            r"(?:ein|eine|der|die|das|kein|keine|mein|meine|dan)\b",
            r"\bsystem-? ?(?:prompt|anweisung\w*)\b|\b(?:antworte|antworten sie) nur mit\b",
            # French
            r"\b(?:ignore[rsz]?|oublie[rsz]?|ne tiens pas compte|ne tenez pas compte|fais abstraction"
            r"|faites abstraction)\b"
            r".{0,50}\b(?:instructions?|consignes?|regles|directives|tout ce qui precede)\b",
            r"\b(?:tu es|vous etes|tu deviens|vous devenez) (?:maintenant|desormais|a present|dorenavant) "
            r"(?:un|une|le|la|mon|ma|dan)\b",
            r"\b(?:prompt|invite) (?:du |de )?systeme\b|\b(?:reponds|repondez) (?:uniquement|seulement)\b",
            # Spanish
            r"\b(?:ignora|ignore|ignoren|olvida|olvide|olviden|omite|omita|haz caso omiso|no hagas caso)\b"
            r".{0,50}"
            r"\b(?:instrucciones|indicaciones|reglas|directrices|normas|todo lo anterior)\b",
            r"\b(?:ahora|a partir de ahora|desde ahora) (?:eres|sos|es usted|usted es) "
            r"(?:un|una|el|la|mi|dan)\b",
            r"\b(?:prompt|indicacion) del sistema\b|\bresponde (?:solo|solamente|unicamente) con\b",
            # Dutch
            r"\b(?:negeer|negeert|vergeet)\b.{0,50}"
            r"\b(?:instructies?|aanwijzingen|regels|richtlijnen|opdrachten|al het bovenstaande)\b",
            r"\b(?:je|jij|u) (?:bent|ben) (?:nu|vanaf nu|voortaan) (?:een|de|het|mijn|dan)\b",
            r"\bsysteem-? ?prompt\b|\bantwoord (?:alleen|uitsluitend) met\b",
            # Italian
            r"\b(?:ignora|ignorate|ignori|dimentica|dimenticate|dimentichi|trascura|non considerare)\b.{0,50}"
            r"\b(?:istruzioni|regole|indicazioni|direttive|tutto quanto sopra)\b",
            r"\b(?:ora|adesso|da ora in poi|d'ora in poi) (?:sei|lei e) "
            r"(?:un|uno|una|il|lo|la|mio|mia|dan)\b",
            r"\bprompt (?:di|del) sistema\b|\brispondi (?:solo|soltanto|unicamente) con\b",
        ]
    ),
    re.DOTALL,
)


def carries_instructions(text: str) -> bool:
    """Whether `text` addresses the model (see the module docstring). Linear in the text: the
    patterns read single-spaced text, and text past SCREEN_MAX_CHARS is not read at all."""
    if len(text) > SCREEN_MAX_CHARS:
        return True
    return any(INJECTION.search(form) for form in screen_forms(text))


def screen_hits(hits: list[Hit]) -> tuple[list[Hit], list[Hit]]:
    """(kept, excluded): passages that address the model are kept out of the prompt."""
    kept: list[Hit] = []
    excluded: list[Hit] = []
    for hit in hits:
        (excluded if carries_instructions(hit.text) else kept).append(hit)
    return kept, excluded


# --- Links ------------------------------------------------------------------------------------

# Anything a renderer might follow: http(s) URLs in any case, and www. names. The URL ends at
# whitespace or at a character Markdown or HTML would end it at.
_URL = re.compile(r"<?(?:https?://|www\.)[^\s<>()\[\]\"'`]*>?", re.IGNORECASE)
_URL_TAIL = re.compile(
    r"(?:https?://|www\.)[^\s<>()\[\]\"'`]*$|(?<![\w.])(?:h(?:t(?:t(?:ps?:?/?)?)?)?|w{1,3})$", re.IGNORECASE
)
_TRAILING = ".,;:!?*_"
# As the widget reads a link: [text](url), the text without brackets, the url without spaces.
_LINK = re.compile(r"\[([^\[\]\n]{0,200})\]\(([^()\s]{0,500})\)")
_LINK_PREFIX = re.compile(r"\[[^\[\]\n]{0,200}(?:\](?:\([^()\s]{0,500})?)?")  # what may still become one
_CITATION = re.compile(r"\d{1,3}")
_MAX_HELD_URL = 2000


def link_key(url: str) -> str:
    """A URL as compared with the sources' ones: without <>, trailing punctuation, scheme,
    "www.", fragment and trailing slash; lower case (a path differing only in case is taken
    as the same page: these are links a source already shows)."""
    url = url.strip().strip("<>").rstrip(_TRAILING)
    url = re.sub(r"^https?://", "", url, flags=re.IGNORECASE)
    url = re.sub(r"^www\.", "", url, flags=re.IGNORECASE)
    return url.split("#", 1)[0].rstrip("/").lower()


def source_links(sources: Iterable[Source]) -> frozenset[str]:
    """The links an answer over `sources` may carry (as link_key): each source's own address
    and every URL written in its retrieved text."""
    keys = set()
    for source in sources:
        for hit in source.hits:
            if hit.url:
                keys.add(link_key(hit.url))
            keys.update(link_key(m.group()) for m in _URL.finditer(hit.text))
    keys.discard("")
    return frozenset(keys)


_IMAGE = re.compile(r"!\[[^\]\n]{0,200}\]\([^)\n]{0,500}\)")
_IMAGE_PREFIX = re.compile(r"!(\[[^\]\n]{0,200}(\](\([^)\n]{0,500})?)?)?")  # what may still become one


class AnswerGuard:
    """A streaming filter over the model's text. feed() returns what may be sent now, holding
    back what may still become a Markdown image (then dropped), a link or a URL (kept only when
    its URL is one of `links`, see source_links; a link outside them keeps its text) until it
    is complete or cannot be one; once the answer recites `instructions` (any run of `words`
    words of them), the rest is replaced by a refusal and `leaked` is true."""

    REFUSAL = "I can't share how I was set up, but I'm happy to help with your question."

    def __init__(self, instructions: str, *, words: int = 8, links: Iterable[str] = ()) -> None:
        tokens = _words(instructions)
        self.shingles = {" ".join(tokens[i : i + words]) for i in range(len(tokens) - words + 1)}
        self.words = words
        self.links = frozenset(links)
        self.pending = ""
        self.sent_words: list[str] = []
        self.leaked = False

    def feed(self, delta: str) -> str:
        if self.leaked:
            return ""
        self.pending = _IMAGE.sub("", self.pending + delta)
        hold = self._hold(self.pending)
        ready, self.pending = self.pending[:hold], self.pending[hold:]
        return self._check(self._unlink(ready))

    def flush(self) -> str:
        """The end: a held-back image prefix cut off by the length limit is dropped too, and a
        cut-off link keeps only its text."""
        ready, self.pending = _IMAGE.sub("", self.pending), ""
        bang = ready.rfind("!")
        if bang != -1 and _IMAGE_PREFIX.fullmatch(ready, bang) and ready[bang:] != "!":
            ready = ready[:bang]
        bracket = ready.rfind("[")
        if bracket != -1 and "](" in ready[bracket:] and _LINK_PREFIX.fullmatch(ready, bracket):
            ready = ready[:bracket] + ready[bracket + 1 : ready.index("](", bracket)]
        return "" if self.leaked else self._check(self._unlink(ready))

    def _hold(self, text: str) -> int:
        """Where what may still become an image, a link or a URL starts (len(text): nothing)."""
        hold = len(text)
        bang = text.rfind("!")
        if bang != -1 and _IMAGE_PREFIX.fullmatch(text, bang):
            hold = bang  # "!", "![alt", "![alt](https://...": wait for the rest
        bracket = text.rfind("[")
        if bracket != -1 and _LINK_PREFIX.fullmatch(text, bracket):
            hold = min(hold, bracket)  # "[text", "[1]", "[text](https://...": wait for the rest
        tail = _URL_TAIL.search(text)
        if tail and len(text) - tail.start() <= _MAX_HELD_URL:
            hold = min(hold, tail.start())  # "htt", "https://evil.exa": wait for its end
        return hold

    def _unlink(self, text: str) -> str:
        """Links whose URL is not a source's become their text; other URLs are removed."""

        def link(match: re.Match[str]) -> str:
            label, url = match.group(1), match.group(2)
            if link_key(url) in self.links:
                return match.group()
            return f"[{label}]" if _CITATION.fullmatch(label) else label

        def bare(match: re.Match[str]) -> str:
            url = match.group()
            core = url.strip("<>").rstrip(_TRAILING)
            trailing = url.strip("<>")[len(core) :]
            return url if link_key(core) in self.links else trailing

        return _URL.sub(bare, _LINK.sub(link, text))

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
