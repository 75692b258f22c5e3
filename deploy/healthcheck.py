"""The image's HEALTHCHECK: GET /health of the web role ($PORT) or, with HEALTHCHECK_URL set, of
any URL (compose points the inference role at its own port). Standard library only, so a check
costs milliseconds instead of Django's start-up.

It asks as the TLS proxy in front would: with a Host header from ALLOWED_HOSTS (Django answers
400 to any other) and `X-Forwarded-Proto: https` (with PARLEY_HTTPS on, plain HTTP is
redirected; the header counts only where TRUST_X_FORWARDED_PROTO is set, as behind a proxy)."""

import os
import sys
import urllib.request

url = os.environ.get("HEALTHCHECK_URL") or f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health"
allowed = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
host = next((h for h in allowed if h != "*" and not h.startswith(".")), "localhost")
request = urllib.request.Request(url, headers={"Host": host, "X-Forwarded-Proto": "https"})  # noqa: S310
try:
    with urllib.request.urlopen(request, timeout=4) as response:  # noqa: S310 - a local URL
        sys.exit(0 if response.status == 200 else 1)
except OSError as exc:
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
