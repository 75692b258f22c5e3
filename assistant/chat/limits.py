"""Rate limits, concurrency caps and the waiting line for the chat, keyed per visitor AND per IP
address, never per connection: five tabs share one visitor's allowance, and a client minting new
visitor tokens is still held by its address. Counters live in Django's cache (local memory
embedded, Redis when REDIS_URL is set, shared by every process).

The limits are data (RATE_RULES, as Zulip's RATE_LIMITING_RULES): which counters a frame of each
kind counts against, each naming the setting that holds its per-minute allowance, read at call
time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.core.cache import cache

from assistant.chat.errors import ChatError
from assistant.models import Conversation

RATE_WINDOW = 60  # seconds; the limits are per minute

# kind of frame -> (counter scope, setting with its allowance per RATE_WINDOW, what to say)
RATE_RULES: dict[str, tuple[tuple[str, str, str], ...]] = {
    # Every frame a visitor sends, whatever its type: handoff, feedback, resume, export, erase,
    # malformed ones too. A message frame counts here and again under "message".
    "frame": (
        ("visitor", "CHAT_FRAMES_PER_MINUTE", "Too many requests"),
        ("ip", "CHAT_FRAMES_PER_MINUTE_PER_IP", "Too many requests from your network"),
    ),
    "message": (
        ("visitor", "CHAT_MESSAGES_PER_MINUTE", "Too many messages"),
        ("ip", "CHAT_MESSAGES_PER_MINUTE_PER_IP", "Too many messages from your network"),
    ),
    # Leaving an email address for an answer by email (assistant/chat/offline.py).
    "email": (
        ("visitor", "CHAT_EMAILS_PER_MINUTE", "Too many tries"),
        ("ip", "CHAT_EMAILS_PER_MINUTE_PER_IP", "Too many tries from your network"),
    ),
    "console": (("agent", "CHAT_CONSOLE_FRAMES_PER_MINUTE", "Too many requests"),),
}


def check_rate(kind: str, **keys: str) -> None:
    """Count one frame of `kind` against each of its counters (keys: visitor=, ip=, agent=);
    raises ChatError("rate_limited", retry_after=seconds) when one is over its allowance."""
    now = time.time()
    start = math.floor(now / RATE_WINDOW) * RATE_WINDOW
    retry_after = max(1, math.ceil(start + RATE_WINDOW - now))
    for scope, setting, said in RATE_RULES[kind]:
        name = f"parley:rate:{kind}:{scope}:{keys[scope]}:{int(start)}"
        cache.add(name, 0, timeout=RATE_WINDOW * 2)
        if cache.incr(name) > getattr(settings, setting):
            raise ChatError(
                "rate_limited", f"{said}; please wait {retry_after} seconds.", retry_after=retry_after
            )


# --- Answers being written, and the line to wait in -------------------------------------------------

# How long an answer holds its slot, as an exponential moving average over this process's answers:
# the wait estimates in "queued" frames. The starting value is what the default CPU model takes
# for a short answer; real answers replace it quickly.
_typical_answer_seconds = 8.0
_SMOOTHING = 0.2
# How often a visitor in line looks whether a slot is free. Polling, not a wake-up: slots are
# freed in the shared cache, by this process or another one, and by expiry.
_POLL_SECONDS = 0.2
# Visitors waiting, per address, in arrival order (this process's sockets).
_lines: dict[str, list[object]] = {}


def wait_estimate(position: int) -> int:
    """Seconds until the visitor at `position` (1 = next) is likely to be answered."""
    per_round = max(settings.CHAT_CONCURRENT_ANSWERS_PER_IP, 1)
    return max(1, math.ceil(position * _typical_answer_seconds / per_round))


def _record_answer_seconds(seconds: float) -> None:
    global _typical_answer_seconds
    _typical_answer_seconds += _SMOOTHING * (seconds - _typical_answer_seconds)


class GenerationSlot:
    """One answer being written, counted per visitor (CHAT_CONCURRENT_ANSWERS_PER_VISITOR, across
    their tabs) and per address (CHAT_CONCURRENT_ANSWERS_PER_IP). The counters expire on their own
    if a process dies holding them.

    The consumer takes the visitor's share at once (`take_visitor`: over it is a real limit, the
    visitor's own other answer) and then waits in its address's line for the address's share
    (`wait_for_ip`). As a context manager it takes both or refuses."""

    def __init__(self, visitor: str, ip: str) -> None:
        self.ip = ip
        self.visitor_key = f"parley:busy:visitor:{visitor}"
        self.ip_key = f"parley:busy:ip:{ip}"
        self.taken: list[str] = []
        self.started: float | None = None

    def _take(self, key: str, limit: int) -> bool:
        cache.add(key, 0, timeout=int(settings.INFERENCE_REQUEST_TIMEOUT) + 60)
        if cache.incr(key) > limit:
            _decr(key)
            return False
        self.taken.append(key)
        return True

    def take_visitor(self) -> GenerationSlot:
        if not self._take(self.visitor_key, settings.CHAT_CONCURRENT_ANSWERS_PER_VISITOR):
            raise ChatError(
                "too_many_answers",
                "An answer is already being written for you in another window; please wait for it.",
                retry_after=5,
            )
        return self

    def _take_ip(self) -> bool:
        if self._take(self.ip_key, settings.CHAT_CONCURRENT_ANSWERS_PER_IP):
            self.started = time.monotonic()
            return True
        return False

    async def wait_for_ip(self, tell: Callable[[int, int], Awaitable[None]]) -> None:
        """Return once this address may have one more answer written; meanwhile wait in its
        line, first come first served, calling tell(position, wait_seconds) whenever the place
        changes. Raises ChatError queue_full (the line is full) or queue_timeout (waited
        CHAT_QUEUE_TIMEOUT_SECONDS)."""
        if not _lines.get(self.ip) and self._take_ip():
            return  # nobody waiting ahead (no empty line is kept per address: they would pile up)
        line = _lines.setdefault(self.ip, [])
        if len(line) >= settings.CHAT_QUEUED_ANSWERS_PER_IP:
            wait = wait_estimate(len(line) + 1)
            people = "person" if len(line) == 1 else "people"
            raise ChatError(
                "queue_full",
                f"The assistant is busy: {len(line)} {people} on your network are already waiting "
                f"for an answer. Please try again in about {wait} seconds.",
                retry_after=wait,
            )
        ticket = object()
        line.append(ticket)
        deadline = time.monotonic() + settings.CHAT_QUEUE_TIMEOUT_SECONDS
        told = None
        try:
            while True:
                position = line.index(ticket) + 1
                busy = cache.get(self.ip_key) or 0
                if position <= settings.CHAT_CONCURRENT_ANSWERS_PER_IP - busy and self._take_ip():
                    return
                if position != told:
                    told = position
                    await tell(position, wait_estimate(position))
                if time.monotonic() >= deadline:
                    waited = math.ceil(settings.CHAT_QUEUE_TIMEOUT_SECONDS)
                    raise ChatError(
                        "queue_timeout",
                        f"The assistant is still busy with other questions from your network after "
                        f"{waited} seconds of waiting. Please try again in a moment.",
                        retry_after=wait_estimate(position),
                    )
                await asyncio.sleep(_POLL_SECONDS)
        finally:
            line.remove(ticket)
            if not line:
                _lines.pop(self.ip, None)

    def __enter__(self) -> GenerationSlot:
        self.take_visitor()
        if not self._take_ip():
            self.__exit__(None, None, None)
            raise ChatError(
                "too_many_answers",
                "Too many answers are being written for your network; please wait.",
                retry_after=5,
            )
        return self

    def __exit__(self, *exc) -> None:
        """Give back what was taken (safe to call more than once)."""
        for key in self.taken:
            _decr(key)
        self.taken = []
        if self.started is not None:
            _record_answer_seconds(time.monotonic() - self.started)
            self.started = None


def _decr(key: str) -> None:
    try:
        cache.decr(key)
    except ValueError:  # expired meanwhile
        pass


# --- Handoffs: conversations waiting for a person -------------------------------------------------


def _handoffs_key(ip: str) -> str:
    return f"parley:handoffs:ip:{ip}"


def check_handoff(visitor: str, ip: str) -> None:
    """Raise ChatError("too_many_handoffs") when this visitor or this address already has as many
    conversations waiting in the agents' queue as CHAT_QUEUED_HANDOFFS_PER_VISITOR / _PER_IP allow.
    (Asking again in a conversation already queued does not come here.)"""
    queued = Conversation.objects.filter(status=Conversation.Status.QUEUED)
    if queued.filter(visitor=visitor).count() >= settings.CHAT_QUEUED_HANDOFFS_PER_VISITOR:
        raise ChatError(
            "too_many_handoffs",
            "You are already waiting for a person in another conversation; they will answer you there.",
        )
    ids = cache.get(_handoffs_key(ip)) or []
    if ids and queued.filter(pk__in=ids).count() >= settings.CHAT_QUEUED_HANDOFFS_PER_IP:
        raise ChatError(
            "too_many_handoffs",
            "Many people on your network are already waiting for a person; please try again in a "
            "few minutes.",
            retry_after=60,
        )


def record_handoff(ip: str, conversation_id: object) -> None:
    """Remember that this address queued this conversation (the ones no longer waiting are
    dropped, so the list stays as short as the queue)."""
    key = _handoffs_key(ip)
    ids = cache.get(key) or []
    waiting = Conversation.objects.filter(pk__in=ids, status=Conversation.Status.QUEUED)
    ids = [str(pk) for pk in waiting.values_list("pk", flat=True)]
    if str(conversation_id) not in ids:
        ids.append(str(conversation_id))
    cache.set(key, ids, timeout=86400)
