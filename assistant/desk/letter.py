"""The letter around a draft's body: the desk, not the model, greets the customer by name and
signs off. The model sees the customer's name only as a placeholder (core/redaction.py) and a
small one greets "Dear <PERSON_1>" or no one; the desk knows the name and the ticket's language.
`letter_body` takes back off what a model or an agent wrote around the body anyway."""

from __future__ import annotations

import re

from django.conf import settings

from assistant.models import MailMessage, Ticket

# Greeting with a name, greeting without one, and sign-off, by the ticket's language (triage);
# English for any other. The signature under the sign-off is DESK_SIGNATURE.
LETTER = {
    "en": ("Hello {name},", "Hello,", "Kind regards,"),
    "de": ("Hallo {name},", "Hallo,", "Freundliche Grüße"),
    "fr": ("Bonjour {name},", "Bonjour,", "Cordialement,"),
    "es": ("Hola, {name}:", "Hola:", "Un saludo,"),
    "nl": ("Beste {name},", "Beste klant,", "Met vriendelijke groet,"),
}
_GREETING_WORDS = (
    r"hello|hi|hey|dear|greetings|good\s+(?:morning|afternoon|evening)|hallo|liebe[rs]?"
    r"|sehr\s+geehrte[rs]?|guten\s+tag|bonjour|bonsoir|salut|ch[eè]re?|hola|buen[oa]s\s+\w+"
    r"|estimad[oa]s?|beste|geachte|goedendag|goedemiddag"
)
# A line that is only a greeting ("Dear Ana Example,", "Hi there!"), or one opening a line and
# followed by the first sentence ("Hello Ana, the router ...").
_GREETING_LINE = re.compile(rf"^(?:{_GREETING_WORDS})(?:\s+[^\s,!:.?]+){{0,4}}\s*[,!:]?\s*$", re.I)
_GREETING_LEAD = re.compile(rf"^(?:{_GREETING_WORDS})(?:\s+[^\s,!:.?]+){{0,3}}\s*[,!]\s+(?=\S)", re.I)
_CLOSING_WORDS = (
    r"(?:kind|best|warm|warmest)\s+regards|regards|best\s+wishes|best|sincerely"
    r"|yours(?:\s+(?:sincerely|truly|faithfully))?|thanks|thank\s+you|many\s+thanks|cheers"
    r"|mit\s+freundlichen\s+grüßen|(?:freundliche|viele|beste|liebe)\s+grüße|cordialement"
    r"|bien\s+(?:cordialement|à\s+vous)|salutations|un\s+saludo|saludos(?:\s+cordiales)?"
    r"|atentamente|met\s+vriendelijke\s+groet(?:en)?|(?:hartelijke\s+)?groet(?:en)?"
)
# A sign-off line ("Best regards," or "Best regards, Brightline support": a few words after it,
# not "Thanks, and tell us if the light stays red."); it and the signature under it are cut.
_CLOSING_LINE = re.compile(rf"^(?:{_CLOSING_WORDS})(?:\s*[,.!]\s*(?:[^\s?]+\s*){{0,4}})?\s*$", re.I)
_CLOSING_WITHIN = 4  # non-empty lines from the end a sign-off may start at


def letter(ticket: Ticket, message: MailMessage, body: str) -> str:
    """`body` as the email the agent reviews: a greeting with the customer's name where it is
    known ("Hello Ana,"), or without it ("Hello,"), the body, and a sign-off with DESK_SIGNATURE.
    An empty body stays empty: a letter with nothing in it must never look like a reply."""
    if not body.strip():
        return ""
    named, unnamed, closing = LETTER.get(ticket.language, LETTER["en"])
    name = first_name(message.from_name or ticket.customer_name)
    greeting = named.format(name=name) if name else unnamed
    return f"{greeting}\n\n{body.strip()}\n\n{closing}\n{settings.DESK_SIGNATURE}"


def first_name(display_name: str) -> str:
    """What a greeting calls the customer, from the name their mail client sends: the first word,
    as help desks do ("Ana Example" -> "Ana"; "Example, Ana" -> "Ana"); the whole name after a
    title ("Dr. Ana Example"); "" for none, or for an address where a name should be."""
    name = " ".join(display_name.replace('"', "").split())
    if not name or "@" in name or not any(c.isalpha() for c in name):
        return ""
    if "," in name:
        name = name.split(",", 1)[1].strip() or name.split(",", 1)[0].strip()
    first = name.split(" ", 1)[0]
    return name if first.endswith(".") else first


def letter_body(text: str) -> str:
    """`text` less a greeting at its start and a sign-off (and the signature under it) at its end:
    what the model or an agent wrote as the reply itself. The model is told to write neither;
    a small one does anyway, and an agent's edit has the desk's own."""
    lines = text.strip().splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    if lines and _GREETING_LINE.match(lines[0].strip()):
        lines.pop(0)
    elif lines:
        rest = _GREETING_LEAD.sub("", lines[0].strip(), count=1)
        lines[0] = rest[:1].upper() + rest[1:]
    filled = [i for i, line in enumerate(lines) if line.strip()]
    for index in filled[-_CLOSING_WITHIN:]:
        if _CLOSING_LINE.match(lines[index].strip()):
            lines = lines[:index]
            break
    return "\n".join(lines).strip()


# --- Support of an agent's edit ------------------------------------------------------------------
