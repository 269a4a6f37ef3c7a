from django.urls import path

from conversations.relay.consumer import ChatConsumer

# django-stubs type path() for views only; Channels routes ASGI apps through it too.
websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/chat/<int:conversation_id>/", ChatConsumer.as_asgi()),  # type: ignore[arg-type]
]
