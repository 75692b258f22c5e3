"""Rate limits and concurrency caps for the chat, keyed per visitor AND per IP address, never per
connection: five tabs share one visitor's allowance, and a client minting new visitor tokens is
still held by its address. Counters live in Django's cache (local memory embedded, Redis when
REDIS_URL is set, shared by every process).
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache

from assistant.errors import ChatError


def check_rate(visitor: str, ip: str) -> None:
    """Count one message; raises ChatError("rate_limited") when the visitor or the address is
    over its limit."""
    window = 60
    now = time.time()
    start = math.floor(now / window) * window
    retry_after = max(1, math.ceil(start + window - now))
    for scope, key, limit in (
        ("visitor", visitor, settings.CHAT_MESSAGES_PER_MINUTE),
        ("ip", ip, settings.CHAT_MESSAGES_PER_MINUTE_PER_IP),
    ):
        name = f"parley:rate:{scope}:{key}:{int(start)}"
        cache.add(name, 0, timeout=window * 2)
        if cache.incr(name) > limit:
            raise ChatError(
                "rate_limited", f"Too many messages; please wait {retry_after} seconds.", retry_after
            )


class GenerationSlot:
    """Caps answers being generated at once per visitor and per IP; use as a context manager
    around one answer. The counters expire on their own if a process dies holding them."""

    def __init__(self, visitor: str, ip: str) -> None:
        self.keys = [
            (f"parley:busy:visitor:{visitor}", settings.CHAT_CONCURRENT_ANSWERS_PER_VISITOR),
            (f"parley:busy:ip:{ip}", settings.CHAT_CONCURRENT_ANSWERS_PER_IP),
        ]
        self.taken: list[str] = []

    def __enter__(self) -> GenerationSlot:
        for key, limit in self.keys:
            cache.add(key, 0, timeout=int(settings.INFERENCE_REQUEST_TIMEOUT) + 60)
            self.taken.append(key)
            if cache.incr(key) > limit:
                self.__exit__(None, None, None)
                raise ChatError(
                    "too_many_answers", "An answer is already being written for you; please wait.", 5
                )
        return self

    def __exit__(self, *exc) -> None:
        for key in self.taken:
            try:
                cache.decr(key)
            except ValueError:  # expired meanwhile
                pass
        self.taken = []
