"""Visitor identity: a signed token, not a guessable id.

The widget keeps the token in the page's localStorage and sends it with every connection; only
the visitor whose token names a conversation may resume it, export it or erase it. The token is
the visitor id signed with the site's SECRET_KEY (django.core.signing), so it cannot be forged or
changed, and it expires after the retention period (a visitor unseen that long starts afresh).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core import signing

_SALT = "parley.visitor"


def issue_token() -> tuple[str, str]:
    """A new visitor: (visitor id, token)."""
    visitor = str(uuid.uuid4())
    return visitor, signing.dumps(visitor, salt=_SALT, compress=False)


def read_token(token: str | None) -> str | None:
    """The visitor id in a valid token, or None (missing, tampered with, expired)."""
    if not token or len(token) > 200:
        return None
    try:
        visitor = signing.loads(token, salt=_SALT, max_age=settings.CHAT_RETENTION_DAYS * 86400)
    except signing.BadSignature:
        return None
    return visitor if isinstance(visitor, str) else None
