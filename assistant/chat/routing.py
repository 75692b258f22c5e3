from channels.security.websocket import OriginValidator
from django.urls import path

from assistant.chat.console_ws import ConsoleConsumer
from assistant.chat.consumers import ChatConsumer, parley_hosts

websocket_urlpatterns = [
    # The chat checks the Origin itself: per site, with an error frame the widget can show.
    path("ws/chat/", ChatConsumer.as_asgi()),
    # The agents' console is only ever opened from the Parley host's own pages.
    path("ws/console/", OriginValidator(ConsoleConsumer.as_asgi(), parley_hosts())),
]
