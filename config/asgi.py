"""ASGI entry point: HTTP through Django, websockets through Channels.

Websockets pass an Origin check first: the Parley host itself (ALLOWED_HOSTS, exactly what
channels' AllowedHostsOriginValidator allows) plus the company sites listed in
WIDGET_ALLOWED_ORIGINS, because the widget runs on those pages and connects from there.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from assistant.routing import websocket_urlpatterns  # noqa: E402


def allowed_websocket_origins() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts + list(settings.WIDGET_ALLOWED_ORIGINS)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
            allowed_websocket_origins(),
        ),
    }
)
