"""Parsing mail with the standard library (`email`, policy.default) and mail-parser-reply.

Hostile or broken mail must never raise out of here: every part is read defensively, oddities
are collected as `defects`, and a mail that cannot be parsed at all is still stored raw by the
caller with the error. HTML is reduced to text: scripts, styles and their content are dropped
first (nh3), then html2text renders what is left; nothing of the HTML is ever rendered as HTML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

MAX_DEPTH = 20  # deeper MIME nesting than this is not walked (it is still stored raw)
MAX_PARTS = 500


@dataclass
class ParsedAttachment:
    filename: str
    content_type: str
    payload: bytes


@dataclass
class ParsedMail:
    message_id: str
    in_reply_to: str
    references: list[str]
    from_email: str
    from_name: str
    to: list[str]
    subject: str
    date: object  # datetime | None
    text: str
    reply_text: str
    automated: str
    attachments: list[ParsedAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)


_ID = re.compile(r"<[^<>\s]{1,900}>")


def parse(raw: bytes) -> ParsedMail:
    message: EmailMessage = BytesParser(policy=policy.default).parsebytes(raw)
    defects = [type(d).__name__ for d in message.defects]
    texts, htmls, attachments = [], [], []
    _walk(message, 0, texts, htmls, attachments, defects, [0])
    text = "\n\n".join(t for t in texts if t.strip())
    if not text.strip() and htmls:
        text = "\n\n".join(html_to_text(h) for h in htmls)
    from_name, from_email = parseaddr(_header(message, "from", defects))
    references = _ID.findall(_header(message, "references", defects))
    in_reply_to = (_ID.findall(_header(message, "in-reply-to", defects)) or [""])[0]
    return ParsedMail(
        message_id=(_ID.findall(_header(message, "message-id", defects)) or [""])[0],
        in_reply_to=in_reply_to,
        references=references,
        from_email=from_email.strip().lower(),
        from_name=from_name.strip()[:200],
        to=[addr for _, addr in getaddresses([_header(message, "to", defects)]) if addr],
        subject=" ".join(_header(message, "subject", defects).split())[:500],
        date=_date(_header(message, "date", defects)),
        text=text.strip(),
        reply_text=reply_part(text).strip(),
        automated=automated_reason(message, from_email, defects),
        attachments=attachments,
        defects=defects,
    )


def _header(message: EmailMessage, name: str, defects: list[str]) -> str:
    try:
        return str(message.get(name, "") or "")
    except Exception as exc:  # noqa: BLE001 - a malformed header must not lose the mail
        defects.append(f"header:{name}:{type(exc).__name__}")
        return ""


def _walk(part, depth, texts, htmls, attachments, defects, count) -> None:
    count[0] += 1
    if depth > MAX_DEPTH or count[0] > MAX_PARTS:
        defects.append("too_deep" if depth > MAX_DEPTH else "too_many_parts")
        return
    if part.is_multipart():
        for child in part.iter_parts():
            _walk(child, depth + 1, texts, htmls, attachments, defects, count)
        return
    content_type = part.get_content_type()
    disposition = part.get_content_disposition()
    named = bool(part.get_filename()) and content_type not in ("text/plain", "text/html")
    if disposition == "attachment" or named:
        payload = part.get_payload(decode=True) or b""
        name = (part.get_filename() or "attachment").replace("/", "_").replace("\\", "_")[:200]
        attachments.append(ParsedAttachment(name, content_type, payload))
        return
    if content_type in ("text/plain", "text/html"):
        try:
            body = part.get_content()
        except (LookupError, UnicodeError, AssertionError, ValueError) as exc:
            defects.append(f"charset:{type(exc).__name__}")
            body = (part.get_payload(decode=True) or b"").decode("utf-8", errors="replace")
        (texts if content_type == "text/plain" else htmls).append(body)


def html_to_text(html: str) -> str:
    import html2text
    import nh3

    cleaned = nh3.clean(html, tags=set(nh3.ALLOWED_TAGS), clean_content_tags={"script", "style"})
    converter = html2text.HTML2Text()
    converter.ignore_images = True
    converter.body_width = 0
    return converter.handle(cleaned).strip()


def reply_part(text: str) -> str:
    """The new words of a reply: quoted history and signatures stripped (mail-parser-reply)."""
    from mailparser_reply import EmailReplyParser

    try:
        return EmailReplyParser(languages=["en", "de", "fr"]).parse_reply(text=text) or text
    except Exception:  # noqa: BLE001 - stripping is a nicety; the whole text is kept anyway
        return text


def _date(value: str):
    try:
        return parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError, IndexError):
        return None


def automated_reason(message: EmailMessage, from_email: str, defects: list[str]) -> str:
    """Why this mail must not get a draft (RFC 3834 and common practice), or ""."""
    auto_submitted = _header(message, "auto-submitted", defects).strip().lower()
    if auto_submitted and auto_submitted != "no":
        return "auto-submitted"
    precedence = _header(message, "precedence", defects).strip().lower()
    if precedence in ("bulk", "list", "junk", "auto_reply"):
        return f"precedence-{precedence}"
    if _header(message, "x-autoreply", defects) or _header(message, "x-autorespond", defects):
        return "auto-reply"
    if message.get_content_type() == "multipart/report" or from_email.lower().startswith(
        ("mailer-daemon@", "postmaster@")
    ):
        return "bounce"
    if _header(message, "x-parley-desk", defects):
        return "own-mail"
    return ""
