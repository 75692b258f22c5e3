"""Action secrets (an API key sent as a header) encrypted at rest: Fernet (AES-128-CBC with an
HMAC-SHA256) under a key derived from ACTIONS_SECRET_KEY, or SECRET_KEY when that is unset.
Rotating the key means entering the secrets again; a secret that no longer decrypts makes its
action fail with a message that says so, never a crash."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class SecretUnreadable(Exception):
    pass


def _fernet() -> Fernet:
    base = getattr(settings, "ACTIONS_SECRET_KEY", "") or settings.SECRET_KEY
    key = hashlib.sha256(("parley-actions:" + base).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode() if secret else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "The action's secret cannot be read (was the secret key changed?); enter it again."
        ) from exc
