"""ASGI entry point: HTTP goes to Django, WebSockets to the chat consumer.

Sockets pass the origin check (the site's own origins: chatsite/origins.py) and the
session auth before routing; a socket whose client stops reading is dropped
(chatsite/slow_clients.py).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()  # sets Django up before the consumer imports models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chatsite import slow_clients  # noqa: E402
from chatsite.origins import SameOriginValidator  # noqa: E402
from conversations.routing import websocket_urlpatterns  # noqa: E402

slow_clients.install()  # under Daphne, a socket whose client stops reading is dropped

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The stubs want patterns of their own (channels-stubs' _ExtendedURLPattern), which
        # path() never returns: see conversations/routing.py.
        "websocket": SameOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))  # type: ignore[arg-type]
        ),
    }
)
