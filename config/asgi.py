"""ASGI entry point: HTTP through Django, websockets through Channels.

Origin checks: the chat websocket checks the Origin itself (assistant/chat/consumers.py: the Parley
host, WIDGET_ALLOWED_ORIGINS and each site's own origins, with an error frame a widget can show);
the agents' console websocket only accepts the Parley host's own pages (channels'
OriginValidator over ALLOWED_HOSTS).

Request bodies are capped before Django reads them (config/body_limit.py).
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from assistant.chat.routing import websocket_urlpatterns  # noqa: E402
from config.body_limit import BodyLimitMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": BodyLimitMiddleware(django_asgi_app),
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
