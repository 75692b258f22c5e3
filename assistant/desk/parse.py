"""Parsing mail with the standard library (`email`, policy.default with header values bounded)
and mail-parser-reply.

Hostile or broken mail must never raise out of here: every part is read defensively, oddities
are collected as `defects`, and a mail that cannot be parsed at all is still stored raw by the
caller with the error. HTML is reduced to text: scripts, styles and their content are dropped
first (nh3), then html2text renders what is left; nothing of the HTML is ever rendered as HTML.

Untrusted mail must not make parsing crawl, so every step that is worse than linear only sees
bounded input (the whole text is still returned and stored):
- header values are cut at MAX_HEADER_CHARS before the header parser reads them (it is quadratic
  in encoded words: 20,000 of them in a From header took 26 s);
- html2text, superlinear in its input (1 MB of HTML took 13 s), gets MAX_HTML_CHARS;
- mail-parser-reply's signature regex backtracks over every run of whitespace (`\\s*^`), so
  60,000 blank lines took minutes: it sees the text with runs of blank lines and of spaces
  collapsed, and only its first REPLY_MAX_CHARS.
And `parse_isolated` runs all of it in a child process that is killed after a time limit, for
whatever slow shape no bound here foresaw.
"""

from __future__ import annotations

import io
import pickle
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from pathlib import Path

import html2text
import nh3
from mailparser_reply import EmailReplyParser

MAX_DEPTH = 20  # deeper MIME nesting than this is not walked (it is still stored raw)
MAX_PARTS = 500
MAX_HEADER_CHARS = 4 * 1024  # of each header value the parser reads (References: more)
_HEADER_LIMITS = {"references": 64 * 1024}
MAX_HTML_CHARS = 64 * 1024  # of HTML reduced to text, when a mail has no plain-text part
REPLY_MAX_CHARS = 20_000  # of the text the reply stripper sees: the newest words are at the top
_SCAN_MAX_CHARS = 1_000_000  # of the text scanned to find those REPLY_MAX_CHARS
_SPACE_RUN = re.compile(r"[^\S\n]{8,}")  # 8+ spaces, tabs or other non-newline whitespace
# A Date before this or more than a year ahead is a broken clock or an attack, not a send time.
EARLIEST_DATE = datetime(1970, 1, 1, tzinfo=UTC)


class _BoundedPolicy(EmailPolicy):
    """policy.default, except that a header value is cut to its limit before it is parsed."""

    def header_fetch_parse(self, name, value):
        limit = _HEADER_LIMITS.get(name.lower(), MAX_HEADER_CHARS)
        if isinstance(value, str) and len(value) > limit:
            value = value[:limit]
        return super().header_fetch_parse(name, value)


POLICY = _BoundedPolicy()


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
    date: datetime | None
    text: str
    reply_text: str
    automated: str
    attachments: list[ParsedAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)


_ID = re.compile(r"<[^<>\s]{1,900}>")


def parse(raw: bytes) -> ParsedMail:
    message: EmailMessage = BytesParser(policy=POLICY).parsebytes(raw)
    defects = [type(d).__name__ for d in message.defects]
    texts, htmls, attachments = [], [], []
    _walk(message, 0, texts, htmls, attachments, defects, [0])
    text = "\n\n".join(t for t in texts if t.strip())
    if not text.strip() and htmls:
        text = _htmls_to_text(htmls, defects)
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
        date=_date(_header(message, "date", defects), defects),
        text=text.strip(),
        reply_text=reply_part(text).strip(),
        automated=automated_reason(message, from_email, defects),
        attachments=attachments,
        defects=defects,
    )


def _header(message: EmailMessage, name: str, defects: list[str]) -> str:
    try:
        raw = next((value for key, value in message.raw_items() if key.lower() == name), "")
        if isinstance(raw, str) and len(raw) > _HEADER_LIMITS.get(name, MAX_HEADER_CHARS):
            defects.append(f"header:{name}:cut")
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


def _htmls_to_text(htmls: list[str], defects: list[str]) -> str:
    texts, budget = [], MAX_HTML_CHARS
    for html in htmls:
        if budget <= 0:
            break
        if len(html) > budget:
            defects.append("html_cut")
        texts.append(html_to_text(html[:budget]))
        budget -= len(html)
    return "\n\n".join(texts)


def html_to_text(html: str) -> str:
    cleaned = nh3.clean(html, tags=set(nh3.ALLOWED_TAGS), clean_content_tags={"script", "style"})
    converter = html2text.HTML2Text()
    converter.ignore_images = True
    converter.body_width = 0
    return converter.handle(cleaned).strip()


def reply_part(text: str) -> str:
    """The new words of a reply: quoted history and signatures stripped (mail-parser-reply), from
    the bounded text (`bounded_for_reply`)."""
    bounded = bounded_for_reply(text)
    try:
        return EmailReplyParser(languages=["en", "de", "fr"]).parse_reply(text=bounded) or bounded
    except Exception:  # noqa: BLE001 - stripping is a nicety; the whole text is kept anyway
        return bounded


def bounded_for_reply(text: str) -> str:
    """The text as mail-parser-reply may see it: lines stripped (it strips them too), runs of 8+
    spaces inside a line made one, no more than two blank lines in a row, at most
    REPLY_MAX_CHARS. Linear in the text scanned, which is itself capped."""
    lines: list[str] = []
    size = blanks = 0
    for line in io.StringIO(text[:_SCAN_MAX_CHARS].replace("\r\n", "\n")):
        line = _SPACE_RUN.sub(" ", line.strip())
        blanks = blanks + 1 if not line else 0
        if blanks > 2:
            continue
        lines.append(line)
        size += len(line) + 1
        if size >= REPLY_MAX_CHARS:
            break
    return "\n".join(lines)[:REPLY_MAX_CHARS]


def _date(value: str, defects: list[str]) -> datetime | None:
    """The Date header as an aware UTC datetime; None (noted in defects with the header's text)
    when it is unreadable, has no zone, or is outside EARLIEST_DATE .. a year from now."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        defects.append(f"date unreadable: {value[:100]}")
        return None
    if moment.tzinfo is None:  # "-0000": the sender's zone is unknown
        return None
    try:
        moment = moment.astimezone(UTC)  # year 9999 at -1200 is past the last datetime
    except OverflowError:
        moment = None
    if moment is None or not EARLIEST_DATE <= moment <= datetime.now(UTC) + timedelta(days=366):
        defects.append(f"date out of range: {value[:100]}")
        return None
    return moment


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


# --- Parsing where it cannot stall anything else --------------------------------------------------


class ParseFailed(Exception):
    """The mail could not be parsed: too slow, the parser raised, or its process died."""


_ROOT = Path(__file__).resolve().parents[2]  # where the child imports this package from
_CHILD = "import sys; from assistant.desk.parse import _child_main; _child_main(sys.argv[1])"


def parse_isolated(path: Path, timeout: float) -> ParsedMail:
    """`parse` of the mail stored at `path`, in a child process killed after `timeout` seconds
    (raises ParseFailed saying why). A fresh interpreter per mail costs ~0.1 s (start-up and this
    module's imports): nothing beside a worker wedged for minutes by one mail, and the child
    shares no state, lock or thread with the worker, so killing it leaves nothing to repair.
    The child reads the file itself; only the parsed result comes back (pickled on stdout)."""
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and code; the path is ours too
            [sys.executable, "-c", _CHILD, str(path)],
            cwd=_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed the child
        raise ParseFailed(f"The mail could not be parsed within {timeout:g} s (MAIL_PARSE_TIMEOUT).") from exc
    if done.returncode != 0:
        last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise ParseFailed(f"The parser process failed (exit code {done.returncode}): {last[0][:300]}")
    ok, value = pickle.loads(done.stdout)  # noqa: S301 - written by our own child just now
    if not ok:
        raise ParseFailed(value)
    return value


def _child_main(path: str) -> None:
    try:
        result = (True, parse(Path(path).read_bytes()))
    except Exception as exc:  # noqa: BLE001 - the parent records it as the mail's error
        result = (False, f"{type(exc).__name__}: {exc}"[:2000])
    pickle.dump(result, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.flush()


_HEAD_LINE = re.compile(rb"^(From|Subject):[ \t]*([^\r\n]{0,300})", re.IGNORECASE | re.MULTILINE)


def sniff_headers(raw_head: bytes) -> dict[str, str]:
    """From and Subject as written at the top of a mail that could not be parsed, for the agents'
    list of unreadable mail: one linear regex over the first bytes, and encoded words decoded
    from at most 300 characters each. Never raises."""
    found: dict[str, str] = {}
    for name, value in _HEAD_LINE.findall(raw_head[: 16 * 1024]):
        key = name.decode().lower()
        if key in found:
            continue
        text = value.decode("utf-8", errors="replace").strip()
        try:
            text = str(make_header(decode_header(text)))
        except Exception:  # noqa: BLE001, S110 - shown as written when it does not decode
            pass
        found[key] = text.replace("\x00", "")[:300]
    return found
